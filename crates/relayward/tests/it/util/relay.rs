//! The relay as a real process: its configuration, start, stop, command line and API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

pub struct Relay {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub relay: SocketAddr,
    pub submission: SocketAddr,
    /// The implicit-TLS submission listener, when the configuration has one.
    pub submissions: Option<SocketAddr>,
    pub http: SocketAddr,
    child: Option<Child>,
}

/// A configuration with loopback listeners on free ports and the given extra TOML.
pub fn config_text(data_dir: &Path, storage: &str, extra: &str) -> String {
    // Keys of an `[smtp]` or `[http]` table in `extra` join the ones written here (TOML allows
    // one of each).
    let (mut smtp, mut http, mut rest) = (String::new(), String::new(), String::new());
    let mut table = "";
    for line in extra.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            table = match t {
                "[smtp]" => "smtp",
                "[http]" => "http",
                _ => "",
            };
            if !table.is_empty() {
                continue;
            }
        }
        let to = match table {
            "smtp" => &mut smtp,
            "http" => &mut http,
            _ => &mut rest,
        };
        to.push_str(line);
        to.push('\n');
    }
    let extra = rest;
    // `relay.test` unless `extra` names the relay otherwise (a test with two relays that send to
    // each other names them apart: a next hop that answers with the relay's own name is itself).
    let hostname = if smtp.lines().any(|l| l.trim_start().starts_with("hostname")) {
        ""
    } else {
        "hostname = \"relay.test\"\n"
    };
    format!(
        r#"
[smtp]
relay_listen = "127.0.0.1:0"
submission_listen = "127.0.0.1:0"
{hostname}{smtp}
[http]
listen = "127.0.0.1:0"
{http}
[storage]
data_dir = "{}"
{storage}
{extra}
"#,
        data_dir.display()
    )
}

/// A tenant `t` whose mail for each domain goes to the server given beside it (an inbound
/// route), as the fault and TLS tests build their destinations.
pub fn routed_tenant(routes: &[(&str, SocketAddr)]) -> String {
    let domains: Vec<String> = routes
        .iter()
        .map(|(d, _)| {
            format!("  {{ name = \"{d}\", kind = \"internal_relay\", verified = true }},\n")
        })
        .collect();
    let hosts: Vec<String> = routes
        .iter()
        .map(|(d, a)| format!("  {{ domain = \"{d}\", host = \"{a}\" }},\n"))
        .collect();
    format!(
        "[[tenants]]\nname = \"t\"\ndomains = [\n{}]\nroutes = [\n{}]\n",
        domains.concat(),
        hosts.concat()
    )
}

/// Whether a command succeeded, and what it printed (standard output, then standard error).
pub fn outcome(out: &std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `relayward check-config` on the file at `path`: whether it passed, and what it printed
/// (standard output, then standard error).
pub fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("run relayward check-config");
    outcome(&out)
}

/// Writes a configuration (`config_text`, data under `dir/data`) to `dir/relayward.toml` and
/// returns its path, for tests that start or check the relay themselves.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("relayward.toml");
    std::fs::write(&path, config_text(&dir.join("data"), "", extra))
        .expect("write the configuration");
    path
}

impl Relay {
    pub fn start(extra: &str) -> Relay {
        Relay::start_with_storage("", extra)
    }

    /// `storage` holds extra keys of the `[storage]` table.
    pub fn start_with_storage(storage: &str, extra: &str) -> Relay {
        Relay::start_on("127.0.0.1", storage, extra)
    }

    /// A relay whose listeners are on the loopback address `ip` (a cluster's nodes each take
    /// one of 127.0.0.x).
    pub fn start_on(ip: &str, storage: &str, extra: &str) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("relayward.toml");
        std::fs::write(
            &config,
            config_text(&dir.path().join("data"), storage, extra)
                .replace("\"127.0.0.1:0\"", &format!("\"{ip}:0\"")),
        )
        .expect("config");
        let mut r = Relay {
            dir,
            config,
            relay: "0.0.0.0:0".parse().expect("addr"),
            submission: "0.0.0.0:0".parse().expect("addr"),
            submissions: None,
            http: "0.0.0.0:0".parse().expect("addr"),
            child: None,
        };
        r.spawn();
        r
    }

    /// Starts the process and waits for its ready line (ports are learnt from it).
    pub fn spawn(&mut self) {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env(
                "RELAYWARD_LOG",
                std::env::var("TEST_RELAYWARD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start relayward");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("relayward printed its ready line");
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name}= in {line}"))
        };
        self.relay = field("relay");
        self.submission = field("submission");
        self.submissions = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("submissions="))
            .and_then(|v| v.parse().ok());
        self.http = field("http");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the running relay.
    pub fn signal(&self, name: &str) {
        let c = self.child.as_ref().expect("running");
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name}");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, and the exit status once it stopped.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "relayward did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a CLI command against this relay's configuration.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RELAYWARD_LOG", "warn")
            .output()
            .expect("run relayward");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "relayward {args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Runs a CLI command that may fail: (succeeded, stdout and stderr).
    pub fn cli_status(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RELAYWARD_LOG", "warn")
            .output()
            .expect("run relayward");
        outcome(&out)
    }

    /// `relayward tenant add NAME`, then its domain DOMAIN, vouched for by the operator.
    pub fn tenant_by_cli(&self, name: &str, domain: &str) {
        self.cli(&["tenant", "add", name]);
        self.cli(&["domain", "add", name, domain, "--verified"]);
    }

    /// Runs a CLI command with `input` on its standard input: (succeeded, stdout and stderr).
    pub fn cli_with_input(&self, args: &[&str], input: &[u8]) -> (bool, String) {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RELAYWARD_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run relayward");
        // Dropped once written: the command reads to the end of its input.
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write the input");
        outcome(&child.wait_with_output().expect("relayward's output"))
    }

    pub fn http_get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.http).expect("http");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// One API call: (status, JSON body or Null).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut s = TcpStream::connect(self.http).expect("http");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = body.unwrap_or("");
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {out:?}"));
        let json = out
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Waits (at most 20 s) until `relayward queue list` names every one of `reasons`.
    pub fn queue_waits_with(&self, reasons: &[&str]) {
        wait_for(Duration::from_secs(20), || {
            let text = self.cli(&["queue", "list"]);
            reasons.iter().all(|r| text.contains(r)).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the queue does not say {reasons:?}:\n{}",
                self.cli(&["queue", "list"])
            )
        })
    }

    pub fn metric(&self, name: &str) -> u64 {
        let page = self.http_get("/metrics");
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Waits until the running relay has loaded the directory as the store now holds it (after
    /// changes made on the command line or through the API).
    pub fn wait_directory(&self) {
        let db = rusqlite::Connection::open(self.dir.path().join("data/relayward.sqlite"))
            .expect("open the relay's database");
        let want: i64 = db
            .query_row(
                "SELECT value FROM meta WHERE key = 'directory_version'",
                [],
                |r| r.get(0),
            )
            .expect("directory version");
        let want = want.max(0) as u64;
        wait_for(Duration::from_secs(20), || {
            (self.metric("relayward_directory_version") >= want).then_some(())
        })
        .expect("the relay reloads its directory");
    }

    /// `relayward token create ARGS`: the new token.
    pub fn token(&self, args: &[&str]) -> String {
        let mut a = vec!["token", "create"];
        a.extend_from_slice(args);
        self.cli(&a).trim().to_string()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.relay, None)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tenant `contoso` with an on-premises connector for 127.0.0.1 and a user, delivering
/// everything to `smart_host`.
pub fn contoso(smart_host: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[delivery]
smart_host = "{smart_host}"
retry_schedule = ["1s"]
expire_after = "1h"
{extra}
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
users = [ {{ address = "alice@contoso.example", password = "change-me", aliases = ["sales@contoso.example"] }} ]
"#
    )
}
