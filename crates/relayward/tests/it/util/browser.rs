//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`),
//! with axe-core (from npm, `tests/browser`) run on the pages a test visits. Without Chromium
//! the browser tests skip with a loud message, except under `CI=true`, where they fail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{peer_port, wait_for};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
    /// Pages axe-core checked, and what it found serious or critical on them.
    pub checked: Vec<(String, Vec<String>)>,
}

/// The axe-core script installed by `scripts/test` (npm ci in tests/browser).
fn axe_source() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is missing at {} ({e}): run `npm ci --prefix crates/relayward/tests/browser` (scripts/test does)",
            path.display()
        )
    })
}

impl Browser {
    /// A browser whose pages ask for `lang` (Accept-Language); `None` when Chromium is not
    /// installed outside CI.
    pub fn start(lang: &str) -> Option<Browser> {
        let have = std::path::Path::new("/usr/bin/chromium").exists()
            && std::path::Path::new("/usr/bin/chromedriver").exists();
        if !have {
            super::skip_or_fail(
                "the browser tests need Debian's chromium and chromium-driver (scripts/test installs them)",
            );
            return None;
        }
        let port = peer_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
            checked: Vec::new(),
        };
        wait_for(Duration::from_secs(20), || {
            b.raw("GET", "/status", None)
                .ok()
                .filter(|v| v["value"]["ready"] == true)
        })
        .expect("chromedriver ready");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    format!("--lang={lang}"),
                    format!("--user-data-dir={}", b._profile.path().display()),
                ],
                "prefs": { "intl.accept_languages": lang }
            }
        }}});
        let v = b.raw("POST", "/session", Some(caps)).expect("new session");
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Some(b)
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> std::io::Result<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())?;
        // ChromeDriver keeps the connection open: read the head, then Content-Length bytes
        // (or chunks to the last one).
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let head_end = loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::other("webdriver closed the connection"));
            }
            out.extend_from_slice(&buf[..n]);
            if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&out[..head_end]).to_ascii_lowercase();
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        loop {
            let have = out.len() - head_end;
            let done = match length {
                Some(n) => have >= n,
                None => out.ends_with(b"0\r\n\r\n"),
            };
            if done {
                break;
            }
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let rest = String::from_utf8_lossy(&out[head_end..]).to_string();
        let body = if length.is_none() && head.contains("transfer-encoding: chunked") {
            dechunk(&rest)
        } else {
            rest
        };
        serde_json::from_str(&body)
            .map_err(|e| std::io::Error::other(format!("{e}: {head} {body}")))
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self
            .raw(method, &format!("/session/{}{path}", self.session), body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        if v["value"]["error"].is_string() {
            panic!("webdriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// What a person reads on the page.
    pub fn text(&self) -> String {
        self.js("return document.body.innerText;")
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    pub fn exists(&self, css: &str) -> bool {
        let v = self
            .raw(
                "POST",
                &format!("/session/{}/elements", self.session),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .expect("elements");
        v["value"].as_array().is_some_and(|a| !a.is_empty())
    }

    pub fn element_text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Types into a field, by its label's `for` id or any CSS selector.
    pub fn fill(&self, css: &str, value: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": value })),
        );
    }

    /// Clicks something that loads a page (a link or a form's button), and waits until the
    /// new page has loaded.
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.mark();
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
        self.wait_new_page(css);
    }

    /// Runs a script that loads a page (a form's submit), and waits until it has loaded.
    pub fn navigate_by(&self, script: &str) {
        self.mark();
        self.js(script);
        self.wait_new_page(script);
    }

    fn mark(&self) {
        self.js("window.__relaywardOld = true; return true;");
    }

    fn wait_new_page(&self, what: &str) {
        wait_for(Duration::from_secs(15), || {
            let v = self
                .raw(
                    "POST",
                    &format!("/session/{}/execute/sync", self.session),
                    Some(json!({ "script": "return window.__relaywardOld === undefined && document.readyState === 'complete';", "args": [] })),
                )
                .ok()?;
            (v["value"] == true).then_some(())
        })
        .unwrap_or_else(|| panic!("no new page loaded after {what}"));
    }

    /// Runs axe-core on the page; keeps the serious and critical violations found.
    pub fn axe(&mut self, page: &str) {
        let source = axe_source();
        self.js(&format!("{source}\nreturn true;"));
        let result = self.call(
            "POST",
            "/execute/async",
            Some(json!({
                "script": "const done = arguments[arguments.length - 1]; axe.run(document).then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).join(', ') + ')'))).catch(e => done(['axe failed: ' + e]));",
                "args": []
            })),
        );
        let found: Vec<String> = result
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_else(|| vec![format!("axe answered {result}")]);
        self.checked.push((page.to_string(), found));
    }

    /// Writes a PNG of the page into `docs/screenshots` (the README links there).
    pub fn screenshot(&self, name: &str) {
        use base64::Engine;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("png");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// A phone's width, or back to a desktop's.
    pub fn width(&self, width: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": 1000 })),
        );
    }

    /// Clears cookies: the next page starts signed out.
    pub fn forget(&self) {
        self.call("DELETE", "/cookie", None);
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
