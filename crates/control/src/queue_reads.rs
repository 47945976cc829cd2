//! Operators' looks at the queue (a listing, one message, the shape), of the whole cluster.
//! Each node holds its own queue; the node asked reads its own and asks the other running
//! nodes through the shared store (`queue_reads`), each of which answers from its own queue
//! (`answer_queue_read`, from the node's queue-order task). The node asked waits up to
//! `ANSWER_WAIT` for them, merges what came, and says which nodes answered and which did not.
//! On one node it is the node's own queue, with nothing to say about others.

use std::collections::HashMap;
use std::time::Duration;

use relayward_delivery::{Queue, QueuedMessage, Selection, Shape, ShapeBy, ShapeRow};
use relayward_store::QueueRead;
use serde::{Deserialize, Serialize};

use crate::Control;

/// How long the node asked waits for the other nodes' answers.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// A node that noted itself within this long is taken as running, and its answer awaited.
pub const ALIVE_MS: i64 = 10_000;
/// At most this many messages (a listing) or domains (a shape) in another node's answer.
pub const MOST_PER_NODE: usize = 1_000;

/// One node's part in a look at the cluster's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NodeQueue {
    /// The node's `node_name`.
    pub node: String,
    /// Whether its answer came in time (the node asked always answers).
    pub answered: bool,
    /// How many queued messages the selection picks there, waiting or in a delivery round
    /// (0 when it did not answer).
    pub messages: usize,
    /// A node that has not noted itself for more than 10 seconds (stopped, or cut off from
    /// the database) is not asked: how many seconds ago it last did. Its spool keeps the mail
    /// it acknowledged. Nodes not seen for a day are not named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_seen_for: Option<u64>,
}

/// What another node said: its name, its answer's body (`None`: none in time), and, for a node
/// not asked, how many seconds ago it was last seen.
type Answer = (String, Option<String>, Option<u64>);

/// What the nodes of a cluster said to a look at the queue; empty on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Nodes {
    /// Every node of the cluster seen in the last day, this one first: those running (noted
    /// in the last 10 seconds) with their answers, the others with `not_seen_for`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeQueue>,
    /// Why the other nodes could not be asked (the shared database away), if so: then only
    /// this node's queue is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_asked: Option<String>,
}

impl Nodes {
    /// The running nodes that did not answer in time.
    pub fn silent(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|n| !n.answered && n.not_seen_for.is_none())
            .map(|n| n.node.as_str())
    }

    /// The nodes not running (not seen for more than 10 seconds), with the seconds since.
    pub fn unseen(&self) -> impl Iterator<Item = (&str, u64)> {
        self.nodes
            .iter()
            .filter_map(|n| Some((n.node.as_str(), n.not_seen_for?)))
    }
}

/// At most this many bytes in a node's answer to a listing: a thousand messages each waiting
/// for a thousand recipients would be tens of megabytes in the shared database.
const MOST_ANSWER_BYTES: usize = 4 << 20;

/// A listing's answer as stored, halved until it fits in `MOST_ANSWER_BYTES` (the count of
/// the messages the selection picks stays whole).
fn list_body(mut answer: ListAnswer) -> serde_json::Result<String> {
    let mut body = serde_json::to_string(&answer)?;
    while body.len() > MOST_ANSWER_BYTES && !answer.messages.is_empty() {
        let keep = answer.messages.len() / 2;
        answer.messages.truncate(keep);
        body = serde_json::to_string(&answer)?;
    }
    Ok(body)
}

/// A node's answer to a listing.
#[derive(Serialize, Deserialize)]
struct ListAnswer {
    messages: Vec<QueuedMessage>,
    /// How many queued messages the selection picks there, listed or not (those in a
    /// delivery round too, which a listing leaves out).
    total: usize,
}

/// A look asked of the cluster, as this node reads its own queue for it.
struct Look<'a> {
    selection: &'a Selection,
    message: Option<&'a str>,
    by: ShapeBy,
    limit: usize,
}

impl Look<'_> {
    fn list(&self, queue: &Queue) -> ListAnswer {
        match self.message {
            Some(id) => {
                let messages: Vec<QueuedMessage> = queue.queued(id).into_iter().collect();
                ListAnswer {
                    total: messages.len(),
                    messages,
                }
            }
            None => ListAnswer {
                messages: queue.list(self.selection, self.limit),
                total: queue.queued_count(self.selection),
            },
        }
    }

    fn shape(&self, queue: &Queue) -> Shape {
        queue.shape(self.selection, self.by, self.limit)
    }
}

impl Control {
    /// The queued messages a selection picks (or the one message `message`), soonest first
    /// (held ones last), at most `limit`: on every running node of a cluster, each listed
    /// message naming its node.
    pub async fn queue_list(
        &self,
        queue: &Queue,
        selection: &Selection,
        message: Option<&str>,
        limit: usize,
    ) -> (Vec<QueuedMessage>, Nodes) {
        let look = Look {
            selection,
            message,
            by: ShapeBy::Recipient,
            limit,
        };
        let Some(me) = &self.cluster_node else {
            let mine = match message {
                Some(id) => queue.queued(id).into_iter().collect(),
                None => queue.list(selection, limit),
            };
            return (mine, Nodes::default());
        };
        let (parts, nodes) = self
            .gather(me, "list", &look, look.list(queue), |a: &ListAnswer| {
                a.total
            })
            .await;
        let mut messages = Vec::new();
        for (node, answer) in parts {
            messages.extend(answer.messages.into_iter().map(|mut m| {
                m.node = Some(node.clone());
                m
            }));
        }
        messages
            .sort_by(|a, b| (a.held, a.next_attempt, &a.id).cmp(&(b.held, b.next_attempt, &b.id)));
        messages.truncate(limit);
        (messages, nodes)
    }

    /// The queue's shape (`Queue::shape`) on every running node of a cluster, added up: each
    /// domain's row is the sum of the nodes' rows. Another node names its busiest 1,000
    /// domains at most, so a domain under that on every node may be left out of a row it
    /// would have made (`more` counts at least those left out).
    pub async fn queue_shape(
        &self,
        queue: &Queue,
        selection: &Selection,
        by: ShapeBy,
        limit: usize,
    ) -> (Shape, Nodes) {
        let Some(me) = &self.cluster_node else {
            return (queue.shape(selection, by, limit), Nodes::default());
        };
        let look = Look {
            selection,
            message: None,
            by,
            limit: limit.max(MOST_PER_NODE),
        };
        let (parts, nodes) = self
            .gather(me, "shape", &look, look.shape(queue), |s: &Shape| {
                s.total.messages
            })
            .await;
        (
            add_up(parts.into_iter().map(|(_, s)| s).collect(), limit),
            nodes,
        )
    }

    /// This node's answer `mine` and those of the other nodes (`ask_the_others`), each with
    /// its node; and every node's part in the look, `count` giving how many messages the
    /// selection picks in an answer.
    async fn gather<T: serde::de::DeserializeOwned>(
        &self,
        me: &str,
        kind: &str,
        look: &Look<'_>,
        mine: T,
        count: impl Fn(&T) -> usize,
    ) -> (Vec<(String, T)>, Nodes) {
        let mut nodes = Nodes::default();
        let others = self.ask_the_others(me, kind, look, &mut nodes).await;
        let mut parts = Vec::new();
        let all = std::iter::once((me.to_string(), Some(mine), None)).chain(
            others.into_iter().map(|(node, body, unseen)| {
                let answer = body.and_then(|b| serde_json::from_str::<T>(&b).ok());
                (node, answer, unseen)
            }),
        );
        for (node, answer, not_seen_for) in all {
            nodes.nodes.push(NodeQueue {
                node: node.clone(),
                answered: answer.is_some(),
                messages: answer.as_ref().map_or(0, &count),
                not_seen_for,
            });
            parts.extend(answer.map(|a| (node, a)));
        }
        (parts, nodes)
    }

    /// Asks every other running node for `kind` (`list` or `shape`) and waits up to
    /// `ANSWER_WAIT` for their answers: each running node with its answer's body, `None` for
    /// those that did not answer in time; the nodes not running, with the seconds since they
    /// were seen. When the store cannot be asked, `nodes` says why.
    async fn ask_the_others(
        &self,
        me: &str,
        kind: &str,
        look: &Look<'_>,
        nodes: &mut Nodes,
    ) -> Vec<Answer> {
        let asked = async {
            let (running, stopped): (Vec<_>, Vec<_>) = self
                .store
                .nodes_seen(me, relayward_clock::now_ms())
                .await?
                .into_iter()
                .filter(|(n, _)| n != me)
                .partition(|(_, ago)| *ago <= ALIVE_MS);
            let others: Vec<String> = running.into_iter().map(|(n, _)| n).collect();
            let unseen = stopped.into_iter().map(|(n, ago)| {
                let secs = u64::try_from(ago / 1000).unwrap_or(0);
                (n, None, Some(secs))
            });
            if others.is_empty() {
                return Ok::<_, relayward_store::StoreError>(unseen.collect());
            }
            let read = QueueRead {
                id: 0,
                at: relayward_clock::now_ms(),
                node: me.to_string(),
                kind: kind.to_string(),
                tenant: look.selection.tenant.clone(),
                domain: look.selection.domain.clone(),
                sender: look.selection.sender.clone(),
                message: look.message.map(str::to_string),
                by_sender: look.by == ShapeBy::Sender,
                limit: i64::try_from(look.limit.min(MOST_PER_NODE)).unwrap_or(1),
            };
            let id = self.store.add_queue_read(&read).await?;
            let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
            let mut answers: HashMap<String, String> = HashMap::new();
            loop {
                answers.extend(self.store.queue_read_answers(id).await?);
                let all_in = others.iter().all(|n| answers.contains_key(n));
                if all_in || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok(others
                .into_iter()
                .map(|n| {
                    let body = answers.remove(&n);
                    (n, body, None)
                })
                .chain(unseen)
                .collect())
        };
        match asked.await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, "the cluster's other nodes could not be asked about their queues; this node's queue alone is shown");
                nodes.not_asked = Some(format!(
                    "the shared database could not be reached ({e}); only this node's queue is shown"
                ));
                Vec::new()
            }
        }
    }

    /// Answers, from this node's own queue, a look another node of the cluster was asked for.
    pub async fn answer_queue_read(&self, queue: &Queue, me: &str, read: &QueueRead) {
        let selection = Selection {
            tenant: read.tenant.clone(),
            domain: read.domain.clone(),
            sender: read.sender.clone(),
        };
        let look = Look {
            selection: &selection,
            message: read.message.as_deref(),
            by: if read.by_sender {
                ShapeBy::Sender
            } else {
                ShapeBy::Recipient
            },
            limit: usize::try_from(read.limit)
                .unwrap_or(1)
                .clamp(1, MOST_PER_NODE),
        };
        let body = match read.kind.as_str() {
            "list" => list_body(look.list(queue)),
            "shape" => serde_json::to_string(&look.shape(queue)),
            other => {
                tracing::warn!(
                    read = read.id,
                    kind = other,
                    "a look at the queue of a kind this node does not know; not answered"
                );
                return;
            }
        };
        let saved = match body {
            Ok(body) => self.store.answer_queue_read(read.id, me, &body).await,
            Err(e) => Err(relayward_store::StoreError::Task(e.to_string())),
        };
        if let Err(e) = saved {
            tracing::warn!(read = read.id, from = read.node, error = %e, "could not answer another node's look at the queue");
        }
    }
}

/// A node of the cluster as the store last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSeen {
    pub node: String,
    /// Seconds since it last noted itself.
    pub seen_secs_ago: u64,
    /// Whether it noted itself in the last 10 seconds.
    pub running: bool,
}

impl Control {
    /// The cluster's nodes seen in the last day (none on one node).
    pub async fn cluster_nodes(&self) -> crate::Result<Vec<NodeSeen>> {
        let seen = self.store.cluster_nodes(relayward_clock::now_ms()).await?;
        Ok(seen
            .into_iter()
            .map(|(node, ago)| NodeSeen {
                node,
                seen_secs_ago: u64::try_from(ago / 1000).unwrap_or(0),
                running: ago <= ALIVE_MS,
            })
            .collect())
    }

    /// An operator forgets a node that will not run again (its spool adopted by another, or
    /// retired empty), so that looks at the queue and `relayward_cluster_nodes_not_seen` stop
    /// naming it. A node still running is refused. Audited.
    pub async fn forget_node(&self, node: &str, actor: &crate::Actor) -> crate::Result<()> {
        if actor.role != relayward_guard::Role::Operator {
            invalid!("forgetting a node is the operator's");
        }
        let seen = self.cluster_nodes().await?;
        match seen.iter().find(|n| n.node == node) {
            None => {
                return Err(crate::NotFound(format!(
                    "no node {node} was seen in the last day"
                )));
            }
            Some(n) if n.running => {
                return Err(crate::Conflict(format!(
                    "node {node} is running (seen {} s ago): stop it first",
                    n.seen_secs_ago
                )));
            }
            Some(_) => {}
        }
        self.store.forget_node(node).await?;
        self.audit(
            actor,
            None,
            "node.forget",
            serde_json::json!({ "node": node }),
        )
        .await
    }
}

/// The nodes' shapes added up into one: rows of the same domain summed, the busiest `limit`
/// kept.
fn add_up(shapes: Vec<Shape>, limit: usize) -> Shape {
    let mut total = ShapeRow {
        domain: "TOTAL".to_string(),
        ..ShapeRow::default()
    };
    let mut rows: HashMap<String, ShapeRow> = HashMap::new();
    let mut minutes = Vec::new();
    let mut more_elsewhere = 0;
    for shape in shapes {
        add_row(&mut total, &shape.total);
        for r in shape.rows {
            match rows.get_mut(&r.domain) {
                Some(row) => add_row(row, &r),
                None => {
                    rows.insert(r.domain.clone(), r);
                }
            }
        }
        more_elsewhere = more_elsewhere.max(shape.more);
        minutes = shape.minutes;
    }
    let mut rows: Vec<ShapeRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.messages
            .cmp(&a.messages)
            .then_with(|| a.domain.cmp(&b.domain))
    });
    let more = rows.len().saturating_sub(limit) + more_elsewhere;
    rows.truncate(limit);
    Shape {
        minutes,
        total,
        rows,
        more,
    }
}

fn add_row(into: &mut ShapeRow, row: &ShapeRow) {
    into.messages += row.messages;
    into.held += row.held;
    if into.by_age.len() < row.by_age.len() {
        into.by_age.resize(row.by_age.len(), 0);
    }
    for (n, m) in into.by_age.iter_mut().zip(&row.by_age) {
        *n += m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(domain: &str, messages: usize, held: usize, by_age: Vec<usize>) -> ShapeRow {
        ShapeRow {
            domain: domain.into(),
            messages,
            held,
            by_age,
        }
    }

    #[test]
    fn a_listing_too_big_for_the_database_is_halved_until_it_fits() {
        let message = |i: usize| QueuedMessage {
            id: format!("M{i}"),
            tenant: Some("contoso".into()),
            mail_from: "alice@contoso.example".into(),
            pending: (0..1000)
                .map(|r| format!("recipient{r}@remote.example"))
                .collect(),
            last_reply: None,
            attempts: 1,
            received_at: 0,
            next_attempt: 0,
            held: false,
            node: None,
        };
        let answer = ListAnswer {
            messages: (0..300).map(message).collect(),
            total: 300,
        };
        let body = list_body(answer).expect("body");
        assert!(body.len() <= MOST_ANSWER_BYTES, "{}", body.len());
        let back: ListAnswer = serde_json::from_str(&body).expect("read back");
        assert_eq!(back.total, 300, "the count stays whole");
        assert!(!back.messages.is_empty() && back.messages.len() < 300);
        assert_eq!(back.messages[0].id, "M0", "the soonest are kept");
    }

    #[test]
    fn the_nodes_shapes_add_up_row_by_row_and_the_busiest_are_kept() {
        let a = Shape {
            minutes: vec![5, 10],
            total: row("TOTAL", 5, 1, vec![3, 2, 0]),
            rows: vec![
                row("example.net", 3, 1, vec![1, 2, 0]),
                row("example.org", 2, 0, vec![2, 0, 0]),
            ],
            more: 0,
        };
        let b = Shape {
            minutes: vec![5, 10],
            total: row("TOTAL", 4, 0, vec![0, 0, 4]),
            rows: vec![
                row("example.org", 3, 0, vec![0, 0, 3]),
                row("example.com", 1, 0, vec![0, 0, 1]),
            ],
            more: 0,
        };
        let sum = add_up(vec![a, b], 2);
        assert_eq!(sum.total, row("TOTAL", 9, 1, vec![3, 2, 4]));
        assert_eq!(
            sum.rows,
            vec![
                row("example.org", 5, 0, vec![2, 0, 3]),
                row("example.net", 3, 1, vec![1, 2, 0]),
            ]
        );
        assert_eq!(sum.more, 1, "example.com is left out by the limit");
        assert_eq!(sum.minutes, vec![5, 10]);
    }
}
