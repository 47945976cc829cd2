//! Behind a load balancer or a reverse proxy. SMTP connections from the addresses in `[smtp]
//! proxy_protocol_from` open with a PROXY protocol header naming the client, and the relay
//! judges that client (connector ranges, connection caps), not the balancer; from anywhere else
//! such a header is just a bad command, so nobody can claim a connector's address by writing
//! one. HTTP requests from `[http] trusted_proxies` are for the client their `X-Forwarded-For`
//! names (sign-in limits, the audit log); from elsewhere that header is not believed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

const BODY: &str = "Subject: through the balancer\r\n\r\nhello\r\n";

fn v1(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 192.0.2.25 40000 25\r\n").into_bytes()
}

fn v2(client: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[192, 0, 2, 25, 0x9c, 0x40, 0, 25]);
    h
}

/// A connection from the balancer (127.0.0.1) that opens with `header`.
fn through_balancer(relay: &Relay, header: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(relay.relay).expect("connect");
    s.write_all(header).expect("header");
    s
}

/// What the relay sends on `s` before it closes it, waiting at most `limit`.
fn until_closed(mut s: TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

#[test]
fn behind_a_load_balancer_the_client_it_names_is_the_one_judged() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!(
        r#"
[smtp]
proxy_protocol_from = ["127.0.0.1"]
max_connections_per_ip = 2
[delivery]
smart_host = "{}"
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["198.51.100.0/24"] }} ]
"#,
        rx.addr
    ));

    // The balancer speaks for a client inside contoso's connector: its mail is relayed.
    let mut c = Client::over(through_balancer(&relay, &v1("198.51.100.7")));
    c.cmd("EHLO onprem.contoso.example");
    let r = c.transaction("ops@contoso.example", &["someone@remote.example"], BODY);
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(1, Duration::from_secs(20));
    assert_eq!(got[0].rcpts, vec!["someone@remote.example".to_string()]);
    assert!(
        got[0].data.contains("([198.51.100.7])"),
        "the Received field names the client: {}",
        got[0].data
    );
    assert_eq!(c.cmd("QUIT").code, 221);

    // For a client outside it (version 2 header): relaying is refused, as for that client.
    let mut c = Client::over(through_balancer(&relay, &v2([203, 0, 113, 9])));
    c.cmd("EHLO elsewhere.example");
    let r = c.transaction("ops@contoso.example", &["someone@remote.example"], BODY);
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().contains("5.7.64"), "{r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);

    // The same header from an address that is not a balancer is a bad command, not a claim.
    let mut c = Client::connect(relay.relay, Some("127.0.0.2".parse().expect("ip")));
    c.send(&v1("198.51.100.7"));
    assert_eq!(c.read().code, 500);
    c.cmd("EHLO sneaky.example");
    let r = c.transaction("ops@contoso.example", &["someone@remote.example"], BODY);
    assert_eq!(r.code, 550, "{r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);
    drop(c);

    // Connection caps count the client named, not the balancer: two for 198.51.100.20 at
    // once, a third refused, while another client through the same balancer is served.
    let _first = Client::over(through_balancer(&relay, &v1("198.51.100.20")));
    let _second = Client::over(through_balancer(&relay, &v1("198.51.100.20")));
    let (third, _) = until_closed(
        through_balancer(&relay, &v1("198.51.100.20")),
        Duration::from_secs(10),
    );
    assert!(
        third.starts_with("421 4.7.0 Too many connections from your address"),
        "{third:?}"
    );
    let _other = Client::over(through_balancer(&relay, &v1("198.51.100.21")));

    // A balancer's health check (version 2 LOCAL) is greeted.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let mut check = Client::over(through_balancer(&relay, &local));
    assert_eq!(check.cmd("QUIT").code, 221);

    // From a balancer, a connection without its header is closed unanswered: at once when it
    // speaks SMTP instead, after 5 s when it says nothing.
    let (said, _) = until_closed(
        through_balancer(&relay, b"EHLO mx.example\r\n"),
        Duration::from_secs(10),
    );
    assert_eq!(said, "");
    let (said, waited) = until_closed(through_balancer(&relay, b""), Duration::from_secs(20));
    assert_eq!(said, "");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

/// A sign-in attempt for an account that does not exist, from `source` (127.0.0.1 when
/// `None`), with `forwarded` as its `X-Forwarded-For`: the HTTP status.
fn sign_in(relay: &Relay, source: Option<&str>, forwarded: &str) -> u16 {
    let mut s = match source {
        None => TcpStream::connect(relay.http).expect("connect"),
        Some(ip) => bind_and_connect(ip.parse().expect("ip"), relay.http),
    };
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // A new address each time: five failures for one address lock it, as they lock an
    // account; what is counted here is the client's attempts.
    static TRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = TRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body =
        format!(r#"{{"email": "nobody{n}@example.com", "password": "not it", "totp": "000000"}}"#);
    write!(
        s,
        "POST /api/v1/login HTTP/1.1\r\nHost: console.example.net\r\nX-Forwarded-For: {forwarded}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"))
}

#[test]
fn behind_a_reverse_proxy_each_client_has_its_own_sign_in_limit() {
    let relay = Relay::start(
        "[http]\ntrusted_proxies = [\"127.0.0.1\"]\npublic_url = \"https://console.example.net/\"\n",
    );
    // Through the proxy (127.0.0.1): 20 attempts for one client, then it waits...
    let statuses: Vec<u16> = (0..21)
        .map(|_| sign_in(&relay, None, "198.51.100.1, 203.0.113.5"))
        .collect();
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[20], 429, "{statuses:?}");
    // ... and another client behind the same proxy does not.
    assert_eq!(sign_in(&relay, None, "203.0.113.6"), 401);

    // From an address that is not a proxy the header is the client's own words: its attempts
    // count for its address, whatever it writes.
    let statuses: Vec<u16> = (0..21)
        .map(|i| sign_in(&relay, Some("127.0.0.2"), &format!("198.51.100.{i}")))
        .collect();
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[20], 429, "{statuses:?}");

    // Links the relay writes name the address people reach it at.
    let out = relay.cli(&["operator", "create", "ops@relay.example"]);
    assert!(out.contains("https://console.example.net/setup/"), "{out}");
}

#[test]
fn a_balancer_in_front_of_implicit_tls_hands_the_handshake_through_whole() {
    let relay = Relay::start(
        "[smtp]\nproxy_protocol_from = [\"127.0.0.1\"]\nsubmissions_listen = \"127.0.0.1:0\"\n",
    );
    let port = relay.submissions.expect("submissions listener");
    // The header and the client's TLS hello in one write, as a balancer forwards them when the
    // client is quick.
    let mut tcp = TcpStream::connect(port).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut conn =
        rustls::ClientConnection::new(tls_client_config(), "relay.test".try_into().expect("name"))
            .expect("tls");
    let mut first = v1("198.51.100.7");
    conn.write_tls(&mut first).expect("client hello");
    tcp.write_all(&first).expect("write");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut greeting = [0u8; 64];
    let n = tls.read(&mut greeting).expect("a greeting over TLS");
    assert!(greeting[..n].starts_with(b"220 "), "{:?}", &greeting[..n]);
    tls.write_all(b"EHLO device.example\r\n").expect("write");
    let mut reply = [0u8; 512];
    let n = tls.read(&mut reply).expect("EHLO reply");
    let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
    assert!(
        reply.contains("[198.51.100.7]"),
        "the client the balancer named: {reply}"
    );
}

/// A real HAProxy (Debian's package, installed by scripts/test) in TCP mode on a loopback port,
/// sending PROXY version 2 to `backend`; stopped when dropped. `None` (after saying so loudly)
/// when haproxy is not installed, outside CI.
struct Haproxy {
    addr: std::net::SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(backend: std::net::SocketAddr) -> Option<Haproxy> {
        use std::process::{Command, Stdio};
        if Command::new("haproxy").arg("-v").output().is_err() {
            skip_or_fail("haproxy is not installed: scripts/test installs Debian's package");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = peer_port();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  log stderr format raw local0 warning\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
                 frontend smtp\n  bind 127.0.0.1:{port}\n  default_backend relays\n\
                 backend relays\n  server relay1 {backend} send-proxy-v2\n"
            ),
        )
        .expect("haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let up = wait_for(Duration::from_secs(20), || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
        assert!(up.is_some(), "haproxy did not listen on {addr}");
        Some(Haproxy {
            addr,
            child,
            _dir: dir,
        })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn behind_a_real_haproxy_each_client_is_judged_by_its_own_address() {
    let rx = Receiver::start(false);
    // HAProxy connects from 127.0.0.1; the tenant's server is 127.0.0.3, another host 127.0.0.4.
    let relay = Relay::start(&format!(
        r#"
[smtp]
proxy_protocol_from = ["127.0.0.1"]
[delivery]
smart_host = "{}"
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.3/32"] }} ]
"#,
        rx.addr
    ));
    let Some(haproxy) = Haproxy::start(relay.relay) else {
        return;
    };
    let mut c = Client::connect(haproxy.addr, Some("127.0.0.3".parse().expect("ip")));
    let ehlo = c.cmd("EHLO onprem.contoso.example");
    assert!(ehlo.lines[0].contains("[127.0.0.3]"), "{ehlo:?}");
    let r = c.transaction("ops@contoso.example", &["someone@remote.example"], BODY);
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(rx.wait(1, Duration::from_secs(20)).len(), 1);

    let mut other = Client::connect(haproxy.addr, Some("127.0.0.4".parse().expect("ip")));
    other.cmd("EHLO elsewhere.example");
    let r = other.transaction("ops@contoso.example", &["someone@remote.example"], BODY);
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().contains("5.7.64"), "{r:?}");
}

#[test]
fn a_balancers_bare_health_check_is_let_go_quietly_and_a_wrong_header_is_warned_about() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[smtp]\nproxy_protocol_from = [\"127.0.0.1\"]\n",
    );
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RELAYWARD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start relayward");
    let mut ready = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("ready line");
    let relay: std::net::SocketAddr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("relay="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{ready}"));
    // A TCP health check: connect, close.
    for _ in 0..3 {
        drop(TcpStream::connect(relay).expect("connect"));
    }
    // A balancer misconfigured without send-proxy: the client's EHLO arrives first.
    let (said, _) = until_closed(
        {
            let mut s = TcpStream::connect(relay).expect("connect");
            s.write_all(b"EHLO client.example\r\n").expect("write");
            s
        },
        Duration::from_secs(10),
    );
    assert_eq!(said, "");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("logs");
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("load balancer closed"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, for the wrong header: {logs}"
    );
    assert!(warnings[0].contains("no usable PROXY header"), "{logs}");
}
