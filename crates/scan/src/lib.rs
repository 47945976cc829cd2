//! Outbound content scanning (SPEC section 6): a score, a verdict (clean, bulk or spam) and the
//! rules that fired, computed before the end-of-DATA reply. The guard reads the verdict: spam and
//! bulk are "suspicious"; the queue sends them out of the high-risk pool.
//!
//! The built-in rules aim at what outbound abuse looks like from a compromised mailbox or server:
//! phishing and malware content, senders hidden behind other domains, mail sent to many people at
//! once. Rules that mark mass mailing (list headers, the bulk fingerprint) make a message *bulk*;
//! the others add up to a score, and at `SPAM_SCORE` the message is *spam*. Rspamd's opinion,
//! when one is configured, is merged in by the caller (`merge`).

pub mod bulk;
pub mod mime;
pub mod rspamd;

use std::borrow::Cow;
use std::sync::{LazyLock, Mutex};

use bulk::BulkTracker;
use mime::Parsed;
use relayward_names::domain_key;

/// Clean, bulk or spam.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Clean,
    Bulk,
    Spam,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Bulk => "bulk",
            Verdict::Spam => "spam",
        }
    }

    /// What the guard counts as suspicious, and what leaves from the high-risk pool.
    pub fn suspicious(self) -> bool {
        self != Verdict::Clean
    }
}

/// What a rule that fired says about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Adds to the content score (spam at `SPAM_SCORE`).
    Content,
    /// A mass-mailing marker: makes the message bulk.
    MassMailing,
    /// An external scanner's symbol: shown and added to the score; that scanner's own verdict
    /// is what counts.
    External,
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub name: Cow<'static, str>,
    pub score: f32,
    pub kind: RuleKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub score: f32,
    pub verdict: Verdict,
    pub rules: Vec<Hit>,
    /// Domain of the header `From:` address, lower-cased, when there is one.
    pub header_from_domain: Option<String>,
    /// External recipients this content reached in 24 h (the bulk fingerprint), when the body
    /// was long enough to fingerprint.
    pub bulk_recipients: Option<u32>,
    /// What an external scanner said, or why it said nothing; `None` when none is configured.
    pub external: Option<String>,
}

impl Scan {
    pub fn fired(&self, rule: &str) -> bool {
        self.rules.iter().any(|h| h.name == rule)
    }

    /// `GTUBE(1000.0), URL_SHORTENER(1.5)`, for the trace.
    pub fn rules_text(&self) -> String {
        self.rules
            .iter()
            .map(|h| format!("{}({:.1})", h.name, h.score))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn hit(&mut self, name: &'static str, score: f32) {
        self.rules.push(Hit {
            name: Cow::Borrowed(name),
            score,
            kind: RuleKind::Content,
        });
    }

    fn bulk_hit(&mut self, name: &'static str) {
        self.rules.push(Hit {
            name: Cow::Borrowed(name),
            score: BULK_RULE_SCORE,
            kind: RuleKind::MassMailing,
        });
    }

    /// Score and verdict from the rules that fired (and an external verdict, when merged).
    fn decide(&mut self, external: Option<Verdict>) {
        self.score = self.rules.iter().map(|h| h.score).sum();
        let content: f32 = self
            .rules
            .iter()
            .filter(|h| h.kind == RuleKind::Content)
            .map(|h| h.score)
            .sum();
        let ours = if content >= SPAM_SCORE {
            Verdict::Spam
        } else if self.rules.iter().any(|h| h.kind == RuleKind::MassMailing) {
            Verdict::Bulk
        } else {
            Verdict::Clean
        };
        self.verdict = ours.max(external.unwrap_or(Verdict::Clean));
    }
}

/// Content score at and above which a message is spam.
pub const SPAM_SCORE: f32 = 6.0;
/// What a mass-mailing marker adds to the shown score.
const BULK_RULE_SCORE: f32 = 1.0;

/// The Generic Test for Unsolicited Bulk Email: any scanner must call a message holding it spam.
const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// The GTUBE searcher, built once: building one for a needle this long costs more than
/// searching a small message with it.
static GTUBE_FINDER: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(GTUBE));

/// Where links start; searched for in every text part.
static HTTP_FINDER: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new("http"));

/// What the relay knows of a message besides its content.
pub struct Envelope<'a> {
    /// Envelope sender; empty for the null sender.
    pub mail_from: &'a str,
    pub recipients: u32,
    /// Recipients outside the sending tenant's accepted domains (what bulk counts).
    pub external_recipients: u32,
    /// Whether a domain is an accepted domain of the sending tenant; `None` for mail that has no
    /// sending tenant (inbound).
    pub accepted: Option<&'a dyn Fn(&str) -> bool>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Content that reaches more than this many external recipients in 24 hours is bulk.
    pub bulk_recipients: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bulk_recipients: 20,
        }
    }
}

/// The built-in scanner: the rules, and the bulk fingerprints seen in the last 24 hours.
#[derive(Debug, Default)]
pub struct Scanner {
    config: Config,
    bulk: Mutex<BulkTracker>,
}

impl Scanner {
    pub fn new(config: Config) -> Scanner {
        Scanner {
            config,
            bulk: Mutex::new(BulkTracker::default()),
        }
    }

    /// Cluster mode: bulk fingerprints count with the other nodes' (`BulkTracker::share`).
    pub fn share_bulk(&self) {
        self.bulk.lock().unwrap_or_else(|p| p.into_inner()).share();
    }

    /// Cluster mode: the bulk bands whose count changed here, for the other nodes.
    pub fn take_bulk_changes(&self) -> Vec<bulk::BandCount> {
        self.bulk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_changed()
    }

    /// Cluster mode: bulk band counts other nodes saved: (node, band count).
    pub fn add_bulk_from<'a>(
        &self,
        rows: impl Iterator<Item = (&'a str, bulk::BandCount)>,
        now: i64,
    ) {
        let mut t = self.bulk.lock().unwrap_or_else(|p| p.into_inner());
        for (node, band) in rows {
            t.set_other(node, band, now);
        }
    }

    /// Scans a whole message (headers and body) at `now` (Unix ms). Text parts are read up to
    /// 1 MiB in all, so a 35 MB message costs about what a 1 MiB one does.
    pub fn scan(&self, message: &[u8], env: &Envelope, now: i64) -> Scan {
        let parsed = mime::parse(message);
        let mut s = Scan {
            score: 0.0,
            verdict: Verdict::Clean,
            rules: Vec::new(),
            header_from_domain: parsed.header("from").and_then(address_domain),
            bulk_recipients: None,
            external: None,
        };
        content_rules(&mut s, message, &parsed, env);
        if let Some(bands) = bulk::fingerprint(&body_text(&parsed)) {
            let count = self.bulk.lock().unwrap_or_else(|p| p.into_inner()).record(
                &bands,
                env.external_recipients,
                now,
            );
            s.bulk_recipients = Some(count.recipients);
            if count.recipients > self.config.bulk_recipients {
                s.bulk_hit("BULK_FINGERPRINT");
            }
        }
        s.decide(None);
        s
    }
}

/// Scans with the default configuration and a fresh bulk tracker (tests and tools).
pub fn scan(message: &[u8]) -> Scan {
    let env = Envelope {
        mail_from: "",
        recipients: 1,
        external_recipients: 1,
        accepted: None,
    };
    Scanner::default().scan(message, &env, 0)
}

/// Folds an external scanner's answer into ours: its symbols join our rules (prefixed with the
/// scanner's name), its score adds to ours, and the worse verdict wins.
pub fn merge(s: &mut Scan, source: &str, verdict: Verdict, score: f32, symbols: &[(String, f32)]) {
    for (name, sc) in symbols {
        s.rules.push(Hit {
            name: Cow::Owned(format!("{}:{name}", source.to_ascii_uppercase())),
            score: *sc,
            kind: RuleKind::External,
        });
    }
    s.decide(Some(verdict));
    s.external = Some(format!("{source}: {} score {score:.1}", verdict.as_str()));
}

/// The plain text parts, else every text part, one after the other; a lone part as it stands.
fn body_text(p: &Parsed) -> Cow<'_, str> {
    let mut plain: Vec<&str> = p
        .parts
        .iter()
        .filter(|x| x.content_type == "text/plain")
        .filter_map(|x| x.text.as_deref())
        .collect();
    if plain.is_empty() {
        plain = p.parts.iter().filter_map(|x| x.text.as_deref()).collect();
    }
    match plain.as_slice() {
        [one] => Cow::Borrowed(one),
        _ => Cow::Owned(plain.join("\n")),
    }
}

fn content_rules(s: &mut Scan, raw: &[u8], p: &Parsed, env: &Envelope) {
    // GTUBE counts in the header block and in the decoded text parts (as other scanners read
    // it), not inside attachments.
    let in_text = p
        .parts
        .iter()
        .filter_map(|x| x.text.as_deref())
        .any(|t| GTUBE_FINDER.find(t.as_bytes()).is_some());
    if in_text || GTUBE_FINDER.find(mime::split_header(raw).0).is_some() {
        s.hit("GTUBE", 1000.0);
    }

    // Header fields a real mail program always writes.
    match p.header("message-id") {
        None => s.hit("MISSING_MESSAGE_ID", 1.0),
        Some(v) if !valid_message_id(v) => s.hit("MALFORMED_MESSAGE_ID", 1.0),
        Some(_) => {}
    }
    match p.header("date") {
        None => s.hit("MISSING_DATE", 1.0),
        Some(v) if !valid_date(v) => s.hit("MALFORMED_DATE", 1.0),
        Some(_) => {}
    }

    // Who the message says it is from.
    let from = s.header_from_domain.clone();
    match &from {
        None => s.hit("MISSING_FROM", 1.5),
        Some(h) => {
            let envelope = env.mail_from.rsplit_once('@').map(|(_, d)| domain_key(d));
            if let Some(e) = envelope
                && !related(h, &e)
            {
                s.hit("FROM_ENVELOPE_MISMATCH", 1.0);
            }
            if let Some(accepted) = env.accepted
                && !accepted(h)
            {
                s.hit("FROM_NOT_ACCEPTED", 2.0);
            }
        }
    }
    if let Some(r) = p.header("reply-to").and_then(address_domain)
        && FREEMAIL.contains(&r.as_str())
        && from.as_deref() != Some(r.as_str())
    {
        s.hit("REPLY_TO_FREEMAIL", 2.5);
    }

    // Recipients hidden in Bcc: many more envelope recipients than the message shows.
    let visible: usize = ["to", "cc"]
        .iter()
        .flat_map(|h| p.headers_named(h))
        .map(|v| v.matches('@').count())
        .sum();
    let hidden = (env.recipients as usize).saturating_sub(visible);
    if hidden >= 10 && hidden > visible {
        s.hit("BCC_MANY", 2.0);
    }

    // Links.
    let texts: Vec<&str> = p.parts.iter().filter_map(|x| x.text.as_deref()).collect();
    let hosts: Vec<String> = texts.iter().flat_map(|t| link_hosts(t)).collect();
    if hosts.iter().any(|h| SHORTENERS.contains(&h.as_str())) {
        s.hit("URL_SHORTENER", 1.5);
    }
    if hosts
        .iter()
        .any(|h| h.parse::<std::net::IpAddr>().is_ok() || h.starts_with('['))
    {
        s.hit("URL_IP_LITERAL", 2.5);
    }
    if !hosts.is_empty() {
        let lower: String = texts.join("\n").to_lowercase();
        if PHISHING.iter().any(|ph| lower.contains(ph)) {
            s.hit("PHISHING_CREDENTIALS", 3.0);
        }
    }

    // Attachments.
    let exts: Vec<String> = p
        .parts
        .iter()
        .filter_map(|x| x.filename.as_deref())
        .filter_map(|f| f.trim().trim_end_matches('.').rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .collect();
    if exts.iter().any(|e| EXECUTABLE.contains(&e.as_str())) {
        s.hit("ATTACH_EXECUTABLE", 5.0);
    }
    if exts.iter().any(|e| MACRO.contains(&e.as_str())) {
        s.hit("ATTACH_MACRO", 3.0);
    }

    // HTML without a plain alternative, and HTML that hides text from the reader.
    let html: Vec<&str> = p
        .parts
        .iter()
        .filter(|x| x.content_type == "text/html")
        .filter_map(|x| x.text.as_deref())
        .collect();
    let has_plain = p.parts.iter().any(|x| {
        x.content_type == "text/plain" && x.text.as_deref().is_some_and(|t| !t.trim().is_empty())
    });
    if !html.is_empty() && !has_plain {
        s.hit("HTML_ONLY", 1.0);
    }
    if html.iter().any(|h| hides_text(h)) {
        s.hit("HTML_HIDDEN_TEXT", 2.5);
    }

    // Mass-mailing markers.
    let precedence = p
        .header("precedence")
        .map(|v| v.trim().to_ascii_lowercase());
    if matches!(precedence.as_deref(), Some("bulk" | "list" | "junk")) {
        s.bulk_hit("PRECEDENCE_BULK");
    }
    if p.header("list-unsubscribe").is_some() {
        s.bulk_hit("LIST_UNSUBSCRIBE");
    }
}

/// One domain is the other or a subdomain of it.
fn related(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

fn valid_message_id(v: &str) -> bool {
    let v = v.trim();
    let Some(inner) = v.strip_prefix('<').and_then(|x| x.strip_suffix('>')) else {
        return false;
    };
    match inner.split_once('@') {
        Some((l, r)) => !l.is_empty() && !r.is_empty() && !inner.contains(char::is_whitespace),
        None => false,
    }
}

/// RFC 5322 date-time, read tolerantly: `[Ddd,] D Mon YYYY HH:MM[:SS] zone [(comment)]`.
fn valid_date(v: &str) -> bool {
    let v = v.split('(').next().unwrap_or("").trim();
    let v = match v.split_once(',') {
        Some((day, rest)) => {
            if !DAYS.contains(&day.trim().to_ascii_lowercase().as_str()) {
                return false;
            }
            rest
        }
        None => v,
    };
    let t: Vec<&str> = v.split_whitespace().collect();
    let [day, month, year, time, zone] = t.as_slice() else {
        return false;
    };
    let num = |s: &str, lo: u32, hi: u32| s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n));
    let time_ok = {
        let parts: Vec<&str> = time.split(':').collect();
        (parts.len() == 2 || parts.len() == 3)
            && num(parts[0], 0, 23)
            && num(parts[1], 0, 59)
            && parts.get(2).is_none_or(|s| num(s, 0, 60))
    };
    let zone_ok = (zone.len() == 5
        && (zone.starts_with('+') || zone.starts_with('-'))
        && zone[1..].bytes().all(|b| b.is_ascii_digit()))
        || ZONES.contains(&zone.to_ascii_uppercase().as_str());
    num(day, 1, 31)
        && MONTHS.contains(&month.to_ascii_lowercase().as_str())
        && (year.len() == 4 && num(year, 1900, 9999) || year.len() == 2 && num(year, 0, 99))
        && time_ok
        && zone_ok
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const ZONES: [&str; 10] = [
    "UT", "GMT", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT",
];

/// Hosts of the `http://` and `https://` links in a text (plain or HTML), lower case.
fn link_hosts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(i) = HTTP_FINDER.find(rest.as_bytes()) {
        let after = &rest[i + 4..];
        let after = after.strip_prefix('s').unwrap_or(after);
        if let Some(url) = after.strip_prefix("://") {
            let end = url
                .find(|c: char| {
                    matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | ')') || c.is_whitespace()
                })
                .unwrap_or(url.len());
            let authority = &url[..end];
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let host = if host.starts_with('[') {
                host.split(']')
                    .next()
                    .map(|h| format!("{h}]"))
                    .unwrap_or_default()
            } else {
                host.split(':').next().unwrap_or(host).to_string()
            };
            if !host.is_empty() {
                out.push(host.trim_end_matches('.').to_string());
            }
        }
        rest = &rest[i + 4..];
    }
    out
}

fn hides_text(html: &str) -> bool {
    let squeezed: String = html
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    HIDING.iter().any(|h| squeezed.contains(h))
}

/// `Name <user@Example.ORG>` or `user@example.org` → `example.org`.
fn address_domain(v: &str) -> Option<String> {
    let inner = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.trim(),
    };
    let (_, domain) = inner.rsplit_once('@')?;
    let d = domain_key(domain.trim()).into_owned();
    (!d.is_empty() && !d.contains(char::is_whitespace)).then_some(d)
}

/// Free-mail providers: a reply address there, on mail from a company domain, is how invoice
/// fraud collects its answers.
const FREEMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "mail.com",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "proton.me",
    "protonmail.com",
    "zoho.com",
    "qq.com",
    "163.com",
];

const SHORTENERS: &[&str] = &[
    "bit.ly",
    "tinyurl.com",
    "t.co",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "rb.gy",
    "t.ly",
    "tiny.cc",
];

const EXECUTABLE: &[&str] = &[
    "exe", "scr", "pif", "com", "bat", "cmd", "js", "jse", "vbs", "vbe", "wsf", "wsh", "hta",
    "msi", "ps1", "jar", "lnk", "cpl", "reg", "dll", "iso", "img", "vhd",
];

const MACRO: &[&str] = &[
    "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppam", "sldm",
];

/// Phrases of credential phishing (lower case), counted only when the message has a link.
const PHISHING: &[&str] = &[
    "verify your account",
    "confirm your password",
    "confirm your identity",
    "your password will expire",
    "your password expires",
    "your mailbox is full",
    "mailbox quota",
    "account will be suspended",
    "account has been suspended",
    "unusual sign-in activity",
    "update your payment",
    "validate your mailbox",
    "re-activate your account",
    "reactivate your account",
    "verifique su cuenta",
    "confirme su contraseña",
];

/// Styles that hide text from the reader but not from filters (after removing whitespace).
const HIDING: &[&str] = &[
    "display:none",
    "visibility:hidden",
    "font-size:0",
    "font-size:1px",
    "max-height:0",
    "opacity:0;",
    "color:#ffffff;background-color:#ffffff",
    "color:#fff;background-color:#fff",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtube_is_spam_bulk_headers_are_bulk_plain_mail_is_clean() {
        let spam = b"From: a@contoso.example\r\nSubject: x\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
        assert_eq!(scan(spam).verdict, Verdict::Spam);
        let bulk = b"From: News <news@Contoso.Example>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@contoso.example>\r\nPrecedence: bulk\r\nList-Unsubscribe:\r\n <mailto:u@contoso.example>\r\n\r\nhello\r\n";
        let s = scan(bulk);
        assert_eq!(s.verdict, Verdict::Bulk);
        assert_eq!(s.header_from_domain.as_deref(), Some("contoso.example"));
        let clean = b"From: a@contoso.example\r\nDate: 22 Nov 2026 10:00 GMT\r\nMessage-ID: <x.1@contoso.example>\r\nSubject: lunch\r\n\r\nPrecedence: bulk in the body is not a header\r\n";
        let s = scan(clean);
        assert_eq!(s.verdict, Verdict::Clean, "{}", s.rules_text());
        assert!(s.rules.is_empty(), "{}", s.rules_text());
    }

    /// An SMTPUTF8 client writes an IDN in Unicode where another writes its A-labels: one
    /// domain either way, not a From that differs from the envelope.
    #[test]
    fn an_idn_in_either_form_is_the_envelopes_domain() {
        let rules = |mail_from: &str, from: &str| {
            let env = Envelope {
                mail_from,
                recipients: 1,
                external_recipients: 1,
                accepted: None,
            };
            let msg = format!("From: Anna <{from}>\r\nSubject: x\r\n\r\nhello\r\n");
            Scanner::default()
                .scan(msg.as_bytes(), &env, 0)
                .rules_text()
        };
        for (mail_from, from) in [
            ("anna@xn--bcher-kva.example", "anna@B\u{fc}cher.example"),
            ("anna@b\u{fc}cher.example", "anna@xn--bcher-kva.example"),
            ("anna@mail.b\u{fc}cher.example", "anna@b\u{fc}cher.example"),
        ] {
            assert!(
                !rules(mail_from, from).contains("FROM_ENVELOPE_MISMATCH"),
                "{mail_from} {from}"
            );
        }
        assert!(
            rules("anna@xn--bcher-kva.example", "anna@b\u{e4}cker.example")
                .contains("FROM_ENVELOPE_MISMATCH")
        );
        assert_eq!(
            address_domain("Anna <anna@B\u{fc}cher.example.>").as_deref(),
            Some("xn--bcher-kva.example")
        );
    }

    #[test]
    fn dates_and_message_ids_are_read_as_mail_programs_write_them() {
        assert!(valid_date("Sun, 22 Nov 2026 10:00:00 +0100"));
        assert!(valid_date("22 Nov 2026 10:00 -0500 (EST)"));
        assert!(valid_date("Mon, 2 Feb 98 23:59:60 GMT"));
        assert!(!valid_date("2026-11-22T10:00:00Z"));
        assert!(!valid_date("Sun, 32 Nov 2026 10:00:00 +0100"));
        assert!(!valid_date("Funday, 22 Nov 2026 10:00:00 +0100"));
        assert!(valid_message_id("<a.b@c.example>"));
        assert!(!valid_message_id("a.b@c.example"));
        assert!(!valid_message_id("<no-at-sign>"));
    }

    #[test]
    fn link_hosts_are_found_in_text_and_markup() {
        let h = link_hosts(
            "see https://Bit.ly/x and <a href=\"http://203.0.113.9:8080/login\">here</a> http://[2001:db8::1]/",
        );
        assert_eq!(h, vec!["bit.ly", "203.0.113.9", "[2001:db8::1]"]);
    }
}
