//! The relay's control socket: how the command line on the same host reaches the running
//! relay's mail queue (`relayward queue`), as Postfix's `postqueue` reaches its master.
//!
//! A Unix socket at `<data_dir>/relayward.sock`, readable and writable by the relay's own user
//! only: whoever can open it can already read the store and the spool, so it trusts the actor
//! name the command line sends. One JSON request line, one JSON answer line per connection.
//! Actions go through the control plane, audited like the API's queue actions, with the
//! command-line actor. Bounded: a request line of at most 4 KiB read within 10 s, at most 8
//! connections at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use relayward_control::queue_reads::Nodes;
use relayward_control::{Actor, Control};
use relayward_delivery::{Queue, QueueAction, QueuedMessage, Selection, Shape, ShapeBy};
use relayward_guard::Role;
use relayward_spool::Spool;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

const MAX_REQUEST: u64 = 4096;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTIONS: usize = 8;
/// The most messages one listing answers.
pub const MAX_LIST: usize = 100_000;

/// Where a relay with this data directory listens.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("relayward.sock")
}

/// What the command line asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Messages waiting, of one tenant, with a recipient in one domain, from one sender, or
    /// any mix.
    List {
        tenant: Option<String>,
        domain: Option<String>,
        #[serde(default)]
        sender: Option<String>,
        limit: usize,
    },
    /// One message.
    Show { id: String },
    /// retry, hold, release, bounce or purge one message, as `actor`.
    Act {
        id: String,
        action: String,
        actor: String,
    },
    /// Takes every unfinished message of another node's spool directory (a node that will not
    /// come back) into this node's spool and queue, as `actor`.
    Adopt { dir: PathBuf, actor: String },
    /// Every waiting message, of one tenant and/or with a recipient in one domain, due now;
    /// the destination's backoff lifted (`Queue::flush`), as `actor`.
    Flush {
        tenant: Option<String>,
        domain: Option<String>,
        #[serde(default)]
        sender: Option<String>,
        actor: String,
    },
    /// The queue's shape (`Queue::shape`), by recipient domain or by sender domain.
    Shape {
        tenant: Option<String>,
        domain: Option<String>,
        sender: Option<String>,
        by_sender: bool,
        limit: usize,
    },
    /// hold, release, bounce or purge every waiting message of a selection (every one with
    /// `all`), as `actor` (`Control::queue_action_selected`).
    ActSelected {
        tenant: Option<String>,
        domain: Option<String>,
        sender: Option<String>,
        all: bool,
        action: String,
        actor: String,
    },
}

/// The relay's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// Messages, and in a cluster which nodes answered (each message names its node).
    Listed {
        messages: Vec<QueuedMessage>,
        #[serde(default)]
        nodes: Nodes,
    },
    Shaped {
        shape: Shape,
        #[serde(default)]
        nodes: Nodes,
    },
    /// What a relay of an earlier version answers (a command line upgraded before the relay
    /// restarts still reads it).
    Messages(Vec<QueuedMessage>),
    Shape(Shape),
    Done {
        message: String,
        action: String,
    },
    /// What an action on a selection did: how many messages, how many were in a delivery round
    /// at that instant (done to each as its round ends), and whether the other nodes of a
    /// cluster were asked to do it too.
    Selected {
        action: String,
        messages: usize,
        in_flight: usize,
        #[serde(default)]
        other_nodes: bool,
    },
    Error(String),
}

/// What the command line says when an action was passed on to the cluster's other nodes.
pub const OTHER_NODES: &str =
    "passed on to the cluster's other nodes, which do it to their own queues within seconds";

fn selection(tenant: Option<String>, domain: Option<String>, sender: Option<String>) -> Selection {
    Selection {
        tenant,
        domain,
        sender,
    }
}

/// Listens on `path` until the task is dropped. An old socket file (a relay that did not stop
/// cleanly) is replaced.
pub fn start(
    path: &Path,
    control: Arc<Control>,
    queue: Queue,
    spool: Spool,
) -> Result<tokio::task::JoinHandle<()>> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow!(
                "cannot remove the old control socket {}: {e}",
                path.display()
            ));
        }
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on the control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict the control socket {}", path.display()))?;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                // Busy: the caller gets a closed connection and says so.
                continue;
            };
            let control = control.clone();
            let queue = queue.clone();
            let spool = spool.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, &control, &queue, &spool).await {
                    tracing::debug!(error = %e, "control socket connection ended");
                }
                drop(permit);
            });
        }
    }))
}

async fn serve_one(
    stream: UnixStream,
    control: &Arc<Control>,
    queue: &Queue,
    spool: &Spool,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| anyhow!("no request within {READ_TIMEOUT:?}"))??;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(request) => answer(request, control, queue, spool).await,
        Err(e) => Reply::Error(format!("not a request this relay understands: {e}")),
    };
    let mut text = serde_json::to_string(&reply)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    Ok(())
}

async fn answer(request: Request, control: &Arc<Control>, queue: &Queue, spool: &Spool) -> Reply {
    match request {
        Request::List {
            tenant,
            domain,
            sender,
            limit,
        } => {
            let (messages, nodes) = control
                .queue_list(
                    queue,
                    &selection(tenant, domain, sender),
                    None,
                    limit.clamp(1, MAX_LIST),
                )
                .await;
            Reply::Listed { messages, nodes }
        }
        Request::Shape {
            tenant,
            domain,
            sender,
            by_sender,
            limit,
        } => {
            let by = if by_sender {
                ShapeBy::Sender
            } else {
                ShapeBy::Recipient
            };
            let (shape, nodes) = control
                .queue_shape(
                    queue,
                    &selection(tenant, domain, sender),
                    by,
                    limit.clamp(1, MAX_LIST),
                )
                .await;
            Reply::Shaped { shape, nodes }
        }
        Request::Show { id } => {
            let (messages, nodes) = control
                .queue_list(queue, &Selection::default(), Some(&id), 1)
                .await;
            if messages.is_empty() {
                let mut said = format!(
                    "no queued message {id} (delivered, bounced, or being delivered this instant)"
                );
                let silent: Vec<&str> = nodes.silent().collect();
                if !silent.is_empty() {
                    said.push_str(&format!(
                        "; not known: {} did not answer within {} s",
                        silent.join(", "),
                        relayward_control::queue_reads::ANSWER_WAIT.as_secs()
                    ));
                }
                for (node, secs) in nodes.unseen() {
                    said.push_str(&format!(
                        "; not known: {node} was not seen for {secs} s (its spool keeps its mail)"
                    ));
                }
                if let Some(why) = &nodes.not_asked {
                    said.push_str(&format!("; {why}"));
                }
                Reply::Error(said)
            } else {
                Reply::Listed { messages, nodes }
            }
        }
        Request::Act { id, action, actor } => {
            let Some(what) = QueueAction::parse(&action) else {
                return Reply::Error(format!("unknown queue action {action}"));
            };
            let actor = Actor::command_line(actor, Role::Operator);
            match control
                .queue_action_anywhere(queue, &id, what, &actor)
                .await
            {
                Ok(Some(before)) => Reply::Done {
                    message: before.id,
                    action: what.as_str().to_string(),
                },
                Ok(None) => Reply::Done {
                    message: format!("{id}: not queued on this node; {OTHER_NODES}"),
                    action: "passed-on".into(),
                },
                Err(e) => Reply::Error(format!("{e:#}")),
            }
        }
        Request::Flush {
            tenant,
            domain,
            sender,
            actor,
        } => {
            let actor = Actor::command_line(actor, Role::Operator);
            match control
                .queue_flush(queue, &selection(tenant, domain, sender), &actor)
                .await
            {
                Ok((n, other_nodes)) => Reply::Done {
                    message: if other_nodes {
                        format!("{n} message(s) due now on this node; {OTHER_NODES}")
                    } else {
                        format!("{n} message(s) due now")
                    },
                    action: "flush".into(),
                },
                Err(e) => Reply::Error(format!("{e:#}")),
            }
        }
        Request::ActSelected {
            tenant,
            domain,
            sender,
            all,
            action,
            actor,
        } => {
            let Some(what) = QueueAction::parse(&action) else {
                return Reply::Error(format!("unknown queue action {action}"));
            };
            let actor = Actor::command_line(actor, Role::Operator);
            let selected = selection(tenant, domain, sender);
            match control
                .queue_action_selected(queue, &selected, all, what, &actor)
                .await
            {
                Ok(done) => Reply::Selected {
                    action: what.as_str().to_string(),
                    messages: done.done.len(),
                    in_flight: done.in_flight(),
                    other_nodes: done.other_nodes,
                },
                Err(e) => Reply::Error(format!("{e:#}")),
            }
        }
        Request::Adopt { dir, actor } => {
            let actor = Actor::command_line(actor, Role::Operator);
            match adopt(&dir, spool, queue).await {
                Ok(n) => {
                    let detail = serde_json::json!({ "dir": dir, "messages": n });
                    if let Err(e) = control.audit(&actor, None, "spool.adopt", detail).await {
                        tracing::warn!(error = %e, "cannot audit a spool adoption");
                    }
                    tracing::warn!(dir = %dir.display(), messages = n, "adopted another node's spool");
                    Reply::Done {
                        message: format!("{n} message(s) from {}", dir.display()),
                        action: "adopt".into(),
                    }
                }
                Err(e) => Reply::Error(format!("{e:#}")),
            }
        }
    }
}

/// Moves the unfinished messages of the spool in `dir` into `spool` and `queue`: each is
/// durable here before it is marked finished there, so a failure halfway can repeat a
/// delivery, never lose one. The other spool is locked while it is read: a node still running
/// on it is refused.
async fn adopt(dir: &Path, spool: &Spool, queue: &Queue) -> Result<usize> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(dir, spool.dir()) {
        return Err(anyhow!("{} is this node's own spool", dir.display()));
    }
    if !dir.join("spool.lock").exists() && !has_segments(dir) {
        return Err(anyhow!(
            "{} holds no spool (no segment-*.log files)",
            dir.display()
        ));
    }
    let dir = dir.to_path_buf();
    let (other, found) = tokio::task::spawn_blocking(move || Spool::open(&dir, None))
        .await
        .map_err(|e| anyhow!("opening the other spool: {e}"))??;
    let mut n = 0;
    for env in found {
        let body = other.body(&env.id).await?;
        spool.put(&env, &body).await?;
        queue.enqueue(env.clone());
        other.done(&env.id);
        n += 1;
    }
    other.flush().await?;
    Ok(n)
}

fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("segment-"))
    })
}

/// Sends one request to the relay of `data_dir` and waits (up to `wait`) for its answer.
pub async fn ask(data_dir: &Path, request: &Request, wait: Duration) -> Result<Reply> {
    let path = path(data_dir);
    let mut stream = UnixStream::connect(&path).await.map_err(|e| {
        anyhow!(
            "cannot reach the running relay through {} ({e}); is `relayward serve` running with this configuration?",
            path.display()
        )
    })?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(wait, BufReader::new(stream).read_line(&mut answer))
        .await
        .map_err(|_| anyhow!("the relay did not answer within {wait:?}"))??;
    if answer.is_empty() {
        return Err(anyhow!(
            "the relay closed the control socket without an answer (busy?)"
        ));
    }
    serde_json::from_str(&answer).context("reading the relay's answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line upgraded before its relay restarts reads the relay's earlier answers.
    #[test]
    fn an_earlier_relays_listing_and_shape_are_still_read() {
        let listing: Reply = serde_json::from_str(r#"{"messages":[]}"#).expect("a listing");
        assert!(matches!(listing, Reply::Messages(m) if m.is_empty()));
        let shape = r#"{"shape":{"minutes":[5],"total":{"domain":"TOTAL","messages":0,"held":0,"by_age":[0,0]},"rows":[],"more":0}}"#;
        let shape: Reply = serde_json::from_str(shape).expect("a shape");
        assert!(matches!(shape, Reply::Shape(s) if s.total.messages == 0));
        let now: Reply =
            serde_json::from_str(r#"{"listed":{"messages":[]}}"#).expect("this version's");
        assert!(matches!(now, Reply::Listed { nodes, .. } if nodes.nodes.is_empty()));
    }
}
