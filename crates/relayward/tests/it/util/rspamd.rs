//! A real Rspamd (Debian's package, installed by scripts/test), started on a loopback port of its
//! own with network lookups off (there is no internet here) and one test rule of ours.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

pub struct RspamdServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// Scores 20 when the message holds `relayward-rspamd-marker`: a message Rspamd calls spam and
/// our built-in rules call clean, to show whose verdict is whose.
const RSPAMD_TEST_RULE: &str = r#"
rspamd_config.RELAYWARD_TEST_MARKER = {
  callback = function(task)
    local content = task:get_content()
    return content ~= nil and tostring(content):find('relayward%-rspamd%-marker') ~= nil
  end,
  score = 20.0,
  description = 'Relayward test marker',
}
"#;

impl RspamdServer {
    /// `None` (after saying so loudly) when rspamd is not installed, outside CI; in CI
    /// (`CI=true`) a missing rspamd fails the test.
    pub fn start() -> Option<RspamdServer> {
        if Command::new("rspamd").arg("--version").output().is_err() {
            skip_or_fail("rspamd is not installed: scripts/test installs Debian's package");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = peer_port();
        let local = dir.path();
        for sub in ["local.d", "db", "run"] {
            std::fs::create_dir_all(local.join(sub)).expect("mkdir");
        }
        let put = |name: &str, text: &str| {
            std::fs::write(local.join(name), text).expect("write rspamd config");
        };
        put(
            "local.d/worker-normal.inc",
            &format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 1;\n"),
        );
        put("local.d/worker-controller.inc", "enabled = false;\n");
        put("local.d/worker-proxy.inc", "enabled = false;\n");
        put(
            "local.d/options.inc",
            "dns {\n  nameserver = [\"127.0.0.1:1\"];\n  timeout = 0.2s;\n  retransmits = 1;\n}\n",
        );
        put(
            "local.d/logging.inc",
            "type = \"console\";\nlevel = \"error\";\n",
        );
        for module in [
            "rbl",
            "spf",
            "dkim",
            "dmarc",
            "surbl",
            "fuzzy_check",
            "asn",
            "hfilter",
            "phishing",
            "greylist",
            "ratelimit",
            "replies",
            "neural",
            "url_reputation",
            "mx_check",
        ] {
            put(&format!("local.d/{module}.conf"), "enabled = false;\n");
        }
        put("rspamd.local.lua", RSPAMD_TEST_RULE);
        let log = std::fs::File::create(local.join("rspamd.log")).expect("log");
        let child = Command::new("rspamd")
            .args(["-f", "-i", "-c", "/etc/rspamd/rspamd.conf"])
            .arg(format!("--var=LOCAL_CONFDIR={}", local.display()))
            .arg(format!("--var=DBDIR={}", local.join("db").display()))
            .arg(format!("--var=RUNDIR={}", local.join("run").display()))
            .arg(format!("--var=LOGDIR={}", local.display()))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start rspamd");
        let server = RspamdServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: Some(child),
            dir,
        };
        // Loading its configuration takes Rspamd some seconds.
        let up = wait_for(Duration::from_secs(120), || server.ping().then_some(()));
        if up.is_none() {
            let log =
                std::fs::read_to_string(server.dir.path().join("rspamd.log")).unwrap_or_default();
            panic!("rspamd did not answer /ping within 120 s: {log}");
        }
        Some(server)
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.contains("pong")
    }

    /// Stops Rspamd (its main process and workers) and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM lets the main process take its workers down with it.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let gone = wait_for(Duration::from_secs(20), || {
                c.try_wait().ok().flatten().map(|_| ())
            });
            if gone.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        wait_for(Duration::from_secs(20), || {
            TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
                .is_err()
                .then_some(())
        });
    }
}

impl Drop for RspamdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
