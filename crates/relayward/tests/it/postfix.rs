//! A real Postfix (Debian's package, installed by scripts/test) as a tenant's on-premises
//! server relaying through Relayward on loopback: when Relayward refuses with
//! 5.7.750 and with 5.7.705, the bounce Postfix writes to its own sender carries that code and
//! text — what the users of a hybrid setup see.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const R750: &str =
    "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains";
const R705: &str = "550 5.7.705 Access denied, tenant has exceeded threshold";

/// One private Postfix instance (its own configuration, queue and log under a temporary
/// directory), listening on a loopback port, relaying everything to `relayhost` and sending
/// mail for `sender.test` (its users' bounces) to `bounces`.
/// The base of the test's Postfix configuration; the test adds its directories, relay host,
/// transports and listener with `postconf -c`.
const MAIN_CF: &str = "compatibility_level = 3.6
mail_owner = postfix
setgid_group = postdrop
";

/// Postfix's own services, none chrooted (the test's queue directory has no chroot files).
const MASTER_CF: &str = "\
pickup     unix  n - n 60   1 pickup
cleanup    unix  n - n -    0 cleanup
qmgr       unix  n - n 300  1 qmgr
rewrite    unix  - - n -    - trivial-rewrite
bounce     unix  - - n -    0 bounce
defer      unix  - - n -    0 bounce
trace      unix  - - n -    0 bounce
verify     unix  - - n -    1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -    - proxymap
proxywrite unix  - - n -    1 proxymap
smtp       unix  - - n -    - smtp
relay      unix  - - n -    - smtp
showq      unix  n - n -    - showq
error      unix  - - n -    - error
retry      unix  - - n -    - error
discard    unix  - - n -    - discard
anvil      unix  - - n -    1 anvil
scache     unix  - - n -    1 scache
postlog    unix-dgram n - n - 1 postlogd
";

struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postfix {
    fn start(relayhost: SocketAddr, bounces: SocketAddr) -> Option<Postfix> {
        let missing = Command::new("postconf")
            .arg("-h")
            .arg("mail_version")
            .output()
            .is_err();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if missing || !root {
            let why = if missing {
                "postfix is not installed (scripts/test installs Debian's package)"
            } else {
                "starting postfix needs root"
            };
            skip_or_fail(why);
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Our own configuration, whatever /etc/postfix holds (a package installed with "No
        // configuration" has no main.cf; an operator's may carry milters or relays).
        std::fs::write(d.join("main.cf"), MAIN_CF).expect("main.cf");
        std::fs::create_dir_all(d.join("queue")).expect("queue dir");
        std::fs::create_dir_all(d.join("data")).expect("data dir");
        run("chown", &["postfix", &d.join("data").display().to_string()]);
        // Postfix refuses a world-writable parent for its directories.
        run("chmod", &["755", &d.display().to_string()]);
        let conf = d.display().to_string();
        let set = |kv: &str| run("postconf", &["-c", &conf, "-e", kv]);
        for kv in [
            format!("queue_directory = {conf}/queue"),
            format!("data_directory = {conf}/data"),
            format!("relayhost = [{}]:{}", relayhost.ip(), relayhost.port()),
            format!(
                "transport_maps = inline:{{ sender.test=smtp:[{}]:{} }}",
                bounces.ip(),
                bounces.port()
            ),
            format!("maillog_file = {conf}/maillog"),
            format!("maillog_file_prefixes = {conf}"),
            "mynetworks = 127.0.0.0/8".into(),
            "inet_interfaces = loopback-only".into(),
            "inet_protocols = ipv4".into(),
            "mydestination =".into(),
            "myhostname = onprem.contoso.example".into(),
            "smtp_tls_security_level = none".into(),
            "smtpd_tls_security_level = none".into(),
            "smtp_dns_support_level = disabled".into(),
            "alias_maps =".into(),
            "alias_database =".into(),
            "compatibility_level = 3.6".into(),
            "queue_run_delay = 1s".into(),
            "minimal_backoff_time = 1s".into(),
            "maximal_backoff_time = 2s".into(),
        ] {
            set(&kv);
        }
        // The listening port is chosen before Postfix binds it (see `peer_port`); should it
        // be taken meanwhile, `postfix start` fails saying nothing, and is tried again on
        // another port.
        let mut failures = Vec::new();
        let mut listening = None;
        for _ in 0..5 {
            let port = peer_port();
            std::fs::write(d.join("master.cf"), MASTER_CF).expect("master.cf");
            run(
                "postconf",
                &[
                    "-c",
                    &conf,
                    "-M",
                    &format!("127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd"),
                ],
            );
            let out = Command::new("postfix")
                .args(["-c", &conf, "start"])
                .output()
                .expect("postfix");
            if out.status.success() {
                listening = Some(port);
                break;
            }
            let log = std::fs::read_to_string(d.join("maillog")).unwrap_or_default();
            failures.push(format!(
                "port {port}: {} {}{}\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            let _ = Command::new("postfix").args(["-c", &conf, "stop"]).output();
        }
        let Some(port) = listening else {
            panic!(
                "postfix did not start in five tries:\n{}",
                failures.join("\n")
            );
        };
        let pf = Postfix { dir, port };
        let up = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        if up.is_none() {
            panic!("postfix did not start: {}", pf.log());
        }
        Some(pf)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let conf = self.dir.path().display().to_string();
        let _ = Command::new("postfix").args(["-c", &conf, "stop"]).output();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Alice, a user of the on-premises server, sends through Postfix; Relayward refuses; Postfix's
/// bounce to alice reaches the test receiver. Returns that bounce.
fn bounce_through_postfix(tenant_extra: &str) -> Option<(Received, String)> {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!(
        r#"
[delivery]
smart_host = "{}"
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"], relay_unregistered = true }} ]
{tenant_extra}
"#,
        rx.addr
    ));
    let pf = Postfix::start(relay.relay, rx.addr)?;
    let mut c = Client::connect(SocketAddr::from(([127, 0, 0, 1], pf.port)), None);
    assert_eq!(c.cmd("EHLO laptop.sender.test").code, 250);
    let r = c.mail(
        "alice@sender.test",
        &["dana@remote.example"],
        "From: alice@sender.test\r\nTo: dana@remote.example\r\nSubject: Quarterly figures\r\n\r\nSee attached.\r\n",
    );
    assert_eq!(r.code, 250, "postfix took the message: {r:?}");
    let bounce = wait_for(Duration::from_secs(60), || {
        rx.messages()
            .into_iter()
            .find(|m| m.rcpts == vec!["alice@sender.test".to_string()])
    })
    .unwrap_or_else(|| panic!("no bounce from postfix; its log:\n{}", pf.log()));
    Some((bounce, pf.log()))
}

/// The bounce's text with folded lines joined (Postfix wraps the remote server's words).
fn unfolded(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn postfix_bounces_carry_the_unregistered_domain_refusal() {
    // sender.test is no accepted domain of contoso, and its allowance is 0.
    let Some((bounce, log)) =
        bounce_through_postfix("limits = { unregistered_allowance_per_day = 0 }")
    else {
        return;
    };
    assert_eq!(bounce.mail_from, "", "a bounce comes from the null sender");
    assert!(
        unfolded(&bounce.data).contains(&format!("said: {R750} (in reply to MAIL FROM command)")),
        "bounce:\n{}\nlog:\n{log}",
        bounce.data
    );
    assert!(bounce.data.contains("Status: 5.7.750"), "{}", bounce.data);
    assert!(
        bounce.data.contains("Undelivered Mail Returned to Sender"),
        "{}",
        bounce.data
    );
}

#[test]
fn postfix_bounces_carry_the_tenant_threshold_refusal() {
    // A lapsed subscription restricts the whole tenant with 5.7.705.
    let Some((bounce, log)) = bounce_through_postfix("subscription_ends = \"2020-01-31\"") else {
        return;
    };
    assert!(
        unfolded(&bounce.data).contains(&format!("said: {R705} (in reply to MAIL FROM command)")),
        "bounce:\n{}\nlog:\n{log}",
        bounce.data
    );
    assert!(bounce.data.contains("Status: 5.7.705"), "{}", bounce.data);
}

#[test]
fn relayward_delivers_to_postfix_by_bdat() {
    // Postfix as the next hop: its smtpd offers CHUNKING and PIPELINING, so Relayward sends
    // each message as one BDAT chunk, not dot-stuffed; Postfix relays it on to the receiver.
    let rx = Receiver::start(false);
    let Some(pf) = Postfix::start(rx.addr, rx.addr) else {
        return;
    };
    let mut relay = Relay::start(&format!(
        r#"
[delivery]
smart_host = "127.0.0.1:{}"
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
"#,
        pf.port
    ));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let small = "From: alice@contoso.example\r\nSubject: small\r\n\r\nHello\r\n.a line that starts with a dot\r\nBye\r\n";
    let big_body = "..two dots at the start of a line of a large message\r\n".repeat(2000);
    let big = format!("From: alice@contoso.example\r\nSubject: large\r\n\r\n{big_body}");
    for (to, body) in [("bob@remote.example", small), ("dave@remote.example", &big)] {
        let r = c.mail("alice@contoso.example", &[to], body);
        assert_eq!(r.code, 250, "{r:?}");
    }
    let got = wait_for(Duration::from_secs(60), || {
        let m = rx.messages();
        (m.len() >= 2).then_some(m)
    })
    .unwrap_or_else(|| panic!("both messages through postfix; its log:\n{}", pf.log()));
    let of = |to: &str| {
        got.iter()
            .find(|m| m.rcpts == [to])
            .unwrap_or_else(|| panic!("{to}: {got:?}"))
    };
    assert!(
        of("bob@remote.example")
            .data
            .contains("\r\n.a line that starts with a dot\r\nBye\r\n"),
        "{}",
        of("bob@remote.example").data
    );
    assert!(of("dave@remote.example").data.contains(&big_body));
    // Postfix counts each command of a session when it ends.
    relay.terminate();
    let bdat = wait_for(Duration::from_secs(30), || {
        let n: u32 = pf
            .log()
            .lines()
            .filter(|l| l.contains("disconnect from"))
            .filter_map(|l| {
                l.split(" bdat=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .sum();
        (n >= 2).then_some(())
    });
    assert!(
        bdat.is_some(),
        "postfix took both messages by BDAT:\n{}",
        pf.log()
    );
}
