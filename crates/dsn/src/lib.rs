//! Delivery status notifications: the RFC 3464 non-delivery report Relayward sends to a sender
//! when a recipient failed permanently or expired.
//!
//! The report is a multipart/report: a part for people (plain text and HTML, in the tenant's
//! language: what happened, who must act, how to fix it step by step, details for admins, the
//! message's hops; words from `texts/*.toml`), the message/delivery-status part for programs, and
//! the original message or its headers. An NDR is never written for the null sender or for a
//! report (loop safety), and the caller sends it from the null sender.

pub mod texts;

use std::fmt::Write;

use relayward_spool::{Envelope, RcptState, Recipient, Ret};

/// Original messages larger than this are returned as headers only, whatever RET asked.
pub const FULL_RETURN_LIMIT: usize = 256 * 1024;

/// Whether `env` may be answered by an NDR at all.
pub fn may_report(env: &Envelope) -> bool {
    !env.is_report && !env.mail_from.is_empty()
}

/// The recipients an NDR should report: failed, and wanting a failure notice.
pub fn reportable(env: &Envelope) -> Vec<&Recipient> {
    env.recipients
        .iter()
        .filter(|r| matches!(r.state, RcptState::Failed { .. }) && r.wants_failure_notice())
        .collect()
}

/// The status code (`5.1.1`) found at the start of a reply's text, or a default by reply class
/// (`2.0.0` for a `250` without one: a success report's recipient was handed on).
pub fn status_of(reply: &str) -> String {
    let mut words = reply.split_whitespace();
    let code = words.next().unwrap_or("");
    if let Some(esc) = words.next().filter(|w| {
        let p: Vec<&str> = w.split('.').collect();
        p.len() == 3
            && p.iter()
                .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit()))
    }) {
        return esc.to_string();
    }
    match code.as_bytes().first() {
        Some(b'2') => "2.0.0".into(),
        Some(b'4') => "4.0.0".into(),
        _ => "5.0.0".into(),
    }
}

pub struct NdrInput<'a> {
    pub reporting_mta: &'a str,
    pub env: &'a Envelope,
    /// Whom the report goes to: the envelope sender, or the original sender behind the
    /// relay's own SRS address.
    pub to: &'a str,
    pub failed: &'a [&'a Recipient],
    pub original: &'a [u8],
    /// RFC 5322 date of the report.
    pub date: String,
    pub arrival_date: String,
    pub message_id: String,
    /// The sending tenant's language (`en`, `es`); English when there are no texts for it.
    pub language: &'a str,
    /// How long the relay retries before giving up (for the expiry text).
    pub expire_hours: u64,
    pub kind: ReportKind,
}

/// What a report says about its recipients (RFC 3464 `Action`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportKind {
    /// `failed`: the recipients will not get the message.
    Failure,
    /// `delayed`: not delivered yet, still being tried until this RFC 5322 date.
    Delay { retry_until: String },
    /// `relayed`: handed to a next hop that does not speak DSN, for senders who asked
    /// NOTIFY=SUCCESS.
    Success,
}

/// Builds the whole NDR message (headers and body), addressed to the envelope sender.
pub fn build_ndr(input: &NdrInput<'_>) -> Vec<u8> {
    let env = input.env;
    let boundary = format!("=_rw_{}", input.message_id.replace(['@', '<', '>'], ""));
    let headers_end = find_headers_end(input.original);
    let subject = original_header(&input.original[..headers_end], "subject").unwrap_or_default();
    let full = env.ret != Some(Ret::Hdrs) && input.original.len() <= FULL_RETURN_LIMIT;

    let t = texts::texts(input.language);
    let (plain, html) = match t {
        Some(t) => human_part(t, input, &subject, &input.original[..headers_end]),
        None => (String::from("Delivery failed."), String::new()),
    };
    let subject_line = t.map_or_else(
        || format!("Undeliverable: {}", one_line(&subject)),
        |t| {
            let template = match input.kind {
                ReportKind::Failure => &t.subject,
                ReportKind::Delay { .. } => &t.delay_subject,
                ReportKind::Success => &t.success_subject,
            };
            texts::fill(template, &[("subject", &one_line(&subject))])
        },
    );
    let alt = format!("{boundary}_alt");
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{mid}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         Content-Language: {lang}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{b}\"\r\n\
         \r\n\
         This is a delivery status notification in MIME format.\r\n\
         \r\n--{b}\r\n\
         Content-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n\
         --{alt}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         {plain}\r\n\
         --{alt}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         {html}\r\n\
         --{alt}--\r\n",
        mta = input.reporting_mta,
        to = relayward_spool::quoted_address(input.to),
        subject = encode_header(&subject_line),
        date = input.date,
        mid = input.message_id,
        lang = if t.is_some() { input.language } else { "en" },
        b = boundary,
    );
    let _ = write!(
        m,
        "\r\n--{b}\r\n\
         Content-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; {mta}\r\n",
        b = boundary,
        mta = input.reporting_mta,
    );
    if let Some(envid) = &env.env_id {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", one_line(envid));
    }
    let _ = write!(m, "Arrival-Date: {}\r\n", input.arrival_date);
    let action = match input.kind {
        ReportKind::Failure => "failed",
        ReportKind::Delay { .. } => "delayed",
        ReportKind::Success => "relayed",
    };
    for r in input.failed {
        let reply = reply_of(r);
        m.push_str("\r\n");
        if let Some(orcpt) = &r.orcpt {
            let _ = write!(m, "Original-Recipient: {}\r\n", one_line(&with_type(orcpt)));
        }
        let _ = write!(
            m,
            "Final-Recipient: {}\r\nAction: {action}\r\nStatus: {}\r\n",
            final_recipient(&r.address),
            status_of(&reply)
        );
        if let RcptState::Failed {
            remote: Some(remote),
            ..
        }
        | RcptState::Delivered { remote, .. } = &r.state
        {
            let _ = write!(m, "Remote-MTA: dns; {}\r\n", one_line(remote));
        }
        let _ = write!(m, "Diagnostic-Code: smtp; {}\r\n", one_line(&reply));
        let _ = write!(m, "Last-Attempt-Date: {}\r\n", input.date);
        if let ReportKind::Delay { retry_until } = &input.kind {
            let _ = write!(m, "Will-Retry-Until: {retry_until}\r\n");
        }
    }
    // RFC 6533: returned header fields in UTF-8 (an SMTPUTF8 message's) are labelled so.
    let utf8 = !input.original[..headers_end].is_ascii();
    let _ = write!(
        m,
        "\r\n--{b}\r\nContent-Type: {ct}\r\n\r\n",
        b = boundary,
        ct = match (full, utf8) {
            (true, false) => "message/rfc822",
            (true, true) => "message/global",
            (false, false) => "text/rfc822-headers",
            (false, true) => "message/global-headers",
        }
    );
    let mut out = m.into_bytes();
    if full {
        out.extend_from_slice(input.original);
    } else {
        out.extend_from_slice(&input.original[..headers_end]);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The part for people, as plain text and as HTML: per kind of failure what happened, who must
/// act and the steps; then details per recipient and the hops.
fn human_part(
    t: &texts::Texts,
    input: &NdrInput<'_>,
    _subject: &str,
    headers: &[u8],
) -> (String, String) {
    let hours = input.expire_hours.to_string();
    let mut plain = String::new();
    let mut html = String::from("<html><body style=\"font-family:sans-serif\">\r\n");
    let all: Vec<&str> = input.failed.iter().map(|r| r.address.as_str()).collect();
    let all = all.join(", ");
    let (title, intro, more) = match input.kind {
        ReportKind::Failure => (
            &t.title,
            match input.failed {
                [one] => texts::fill(&t.intro_one, &[("recipient", &one.address)]),
                many => texts::fill(&t.intro_many, &[("count", &many.len().to_string())]),
            },
            None,
        ),
        ReportKind::Delay { .. } => (
            &t.delay_title,
            texts::fill(&t.delay_intro, &[("recipient", &all)]),
            Some(texts::fill(&t.delay_more, &[("hours", &hours)])),
        ),
        ReportKind::Success => (
            &t.success_title,
            texts::fill(&t.success_intro, &[("recipient", &all)]),
            None,
        ),
    };
    let _ = write!(plain, "{title}\r\n\r\n{intro}\r\n");
    let _ = write!(
        html,
        "<h1>{}</h1>\r\n<p>{}</p>\r\n",
        esc(title),
        esc(&intro)
    );
    if let Some(more) = &more {
        let _ = write!(plain, "{more}\r\n");
        let _ = write!(html, "<p>{}</p>\r\n", esc(more));
    }
    // One explanation per status code, in the order the recipients first show it (failures
    // only: a delay or a relay needs no fixing).
    let mut seen: Vec<String> = Vec::new();
    for r in input
        .failed
        .iter()
        .filter(|_| input.kind == ReportKind::Failure)
    {
        let status = status_of(&reply_of(r));
        if seen.contains(&status) {
            continue;
        }
        seen.push(status.clone());
        let who_for: Vec<&str> = input
            .failed
            .iter()
            .filter(|x| status_of(&reply_of(x)) == status)
            .map(|x| x.address.as_str())
            .collect();
        let domain = r.address.rsplit_once('@').map_or("", |(_, d)| d);
        let values = [
            ("recipient", who_for.join(", ")),
            ("sender", input.to.to_string()),
            ("tenant", input.env.tenant.clone().unwrap_or_default()),
            ("domain", domain.to_string()),
            (
                "sender_domain",
                input
                    .env
                    .mail_from
                    .rsplit_once('@')
                    .map_or(String::new(), |(_, d)| d.to_string()),
            ),
            ("hours", hours.clone()),
        ];
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let code = t.code(&status);
        let what = texts::fill(&code.what, &values);
        let who = t.who(&code.who);
        let _ = write!(
            plain,
            "\r\n{h}\r\n{u}\r\n{what}\r\n\r\n{w}\r\n{u2}\r\n{who}\r\n\r\n{f}\r\n{u3}\r\n",
            h = t.what_happened,
            u = underline(&t.what_happened),
            w = t.who_must_act,
            u2 = underline(&t.who_must_act),
            f = t.how_to_fix,
            u3 = underline(&t.how_to_fix),
        );
        let _ = write!(
            html,
            "<h2>{}</h2>\r\n<p>{}</p>\r\n<h2>{}</h2>\r\n<p>{}</p>\r\n<h2>{}</h2>\r\n<ol>\r\n",
            esc(&t.what_happened),
            esc(&what),
            esc(&t.who_must_act),
            esc(who),
            esc(&t.how_to_fix)
        );
        for (i, step) in code.steps.iter().enumerate() {
            let step = texts::fill(step, &values);
            let _ = write!(plain, "{}. {step}\r\n", i + 1);
            let _ = write!(html, "<li>{}</li>\r\n", esc(&step));
        }
        html.push_str("</ol>\r\n");
    }
    let _ = write!(plain, "\r\n{}\r\n{}\r\n", t.details, underline(&t.details));
    let _ = write!(html, "<h2>{}</h2>\r\n", esc(&t.details));
    for r in input.failed {
        let reply = reply_of(r);
        let remote = match &r.state {
            RcptState::Failed {
                remote: Some(remote),
                ..
            }
            | RcptState::Delivered { remote, .. } => remote.clone(),
            _ => "-".into(),
        };
        let rows = [
            ("", r.address.clone()),
            (t.status.as_str(), status_of(&reply)),
            (t.reply.as_str(), one_line(&reply)),
            (t.reporting_server.as_str(), input.reporting_mta.to_string()),
            (t.remote_server.as_str(), one_line(&remote)),
            (t.time.as_str(), input.date.clone()),
            (t.message_id.as_str(), input.env.id.clone()),
        ];
        html.push_str("<table>\r\n");
        for (label, value) in rows {
            if label.is_empty() {
                let _ = write!(plain, "\r\n{value}\r\n");
                let _ = write!(html, "<tr><th colspan=\"2\">{}</th></tr>\r\n", esc(&value));
            } else {
                let _ = write!(plain, "  {label}: {value}\r\n");
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td></tr>\r\n",
                    esc(label),
                    esc(&value)
                );
            }
        }
        html.push_str("</table>\r\n");
    }
    let hops = received_lines(headers);
    let _ = write!(plain, "\r\n{}\r\n{}\r\n", t.hops, underline(&t.hops));
    let _ = write!(html, "<h2>{}</h2>\r\n", esc(&t.hops));
    if hops.is_empty() {
        let _ = write!(plain, "{}\r\n", t.no_hops);
        let _ = write!(html, "<p>{}</p>\r\n", esc(&t.no_hops));
    } else {
        html.push_str("<ol>\r\n");
        // Received: lines are newest first; hops read oldest first.
        for (i, h) in hops.iter().rev().enumerate() {
            let _ = write!(plain, "{}. {h}\r\n", i + 1);
            let _ = write!(html, "<li>{}</li>\r\n", esc(h));
        }
        html.push_str("</ol>\r\n");
    }
    let _ = write!(plain, "\r\n{}\r\n", t.original_below);
    let _ = write!(html, "<p>{}</p>\r\n</body></html>", esc(&t.original_below));
    (plain, html)
}

fn underline(heading: &str) -> String {
    "-".repeat(heading.chars().count())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The original's `Received:` lines, unfolded, newest first.
fn received_lines(headers: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(headers);
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case("received")
        {
            current = Some(v.trim().to_string());
        }
    }
    out.extend(current);
    out
}

/// A header value as RFC 2047 encoded words when it is not plain ASCII.
fn encode_header(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    use base64::Engine;
    // Encoded words of at most 45 input bytes each, split on character boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// The reply a report gives for a recipient: its failure, its last temporary error, or the
/// next hop's acceptance.
fn reply_of(r: &Recipient) -> String {
    match &r.state {
        RcptState::Failed { reply, .. } | RcptState::Delivered { reply, .. } => reply.clone(),
        RcptState::Pending {
            last_reply: Some(l),
        } => l.clone(),
        RcptState::Pending { last_reply: None } => "451 4.0.0 Not delivered yet".into(),
    }
}

/// The recipient as a delivery status names it: `rfc822;`, or for an address in UTF-8, RFC
/// 6533's `utf-8;` in its ASCII form (`\x{HEX}`), so that the status part stays ASCII.
fn final_recipient(address: &str) -> String {
    if address.is_ascii() {
        format!("rfc822; {}", relayward_spool::quoted_address(address))
    } else {
        format!("utf-8; {}", relayward_names::utf8_addr_xtext(address))
    }
}

/// ORCPT is `addr-type;address`; keep it, or say rfc822 when the type is missing. An address
/// in UTF-8 (`utf-8;`) is written in RFC 6533's ASCII form, `\x{HEX}` for each character
/// outside it.
fn with_type(orcpt: &str) -> String {
    if let Some(ascii) = relayward_names::utf8_orcpt_ascii(orcpt) {
        ascii
    } else if orcpt.contains(';') {
        orcpt.to_string()
    } else {
        format!("rfc822;{orcpt}")
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// Offset just past the blank line ending the header block (or the whole message).
pub fn find_headers_end(msg: &[u8]) -> usize {
    memchr::memmem::find(msg, b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(msg.len())
}

/// The unfolded value of the first header `name` (case-insensitive).
pub fn original_header(headers: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(headers);
    let mut value: Option<String> = None;
    for line in text.split("\r\n") {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_string());
        }
    }
    value
}

/// An RFC 5322 date (`Sun, 22 Nov 2026 10:00:00 +0000`) for a Unix time, in UTC.
pub fn rfc5322_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = relayward_clock::civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_341_600),
            "Sun, 22 Nov 2026 10:00:00 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    fn env() -> Envelope {
        let mut failed = Recipient::new("nobody@remote.example");
        failed.state = RcptState::Failed {
            reply: "550 5.1.1 User unknown".into(),
            remote: Some("mx.remote.example".into()),
        };
        failed.orcpt = Some("rfc822;nobody@remote.example".into());
        Envelope {
            id: "M1".into(),
            received_at: 0,
            mail_from: "alice@contoso.example".into(),
            ret: Some(Ret::Hdrs),
            env_id: Some("E1".into()),
            smtputf8: false,
            body_8bit: false,
            tenant: None,
            origin: "inbound".into(),
            client_ip: "127.0.0.1".into(),
            helo: "c".into(),
            recipients: vec![failed, Recipient::new("ok@remote.example")],
            attempts: 1,
            next_attempt: 0,
            is_report: false,
            delay_notified: false,
            high_risk: String::new(),
            held: false,
        }
    }

    /// The report on `failed` of `e`, about `original`, as text.
    fn report(e: &Envelope, failed: &[&Recipient], original: &[u8], kind: ReportKind) -> String {
        let ndr = build_ndr(&NdrInput {
            reporting_mta: "relay.example.net",
            env: e,
            to: &e.mail_from,
            failed,
            original,
            date: "Sun, 22 Nov 2026 10:00:00 +0000".into(),
            arrival_date: "Sun, 22 Nov 2026 09:00:00 +0000".into(),
            message_id: "N1@relay.example.net".into(),
            language: "en",
            expire_hours: 48,
            kind,
        });
        String::from_utf8(ndr).expect("utf8")
    }

    #[test]
    fn ndr_has_the_three_rfc3464_parts() {
        let e = env();
        let failed = reportable(&e);
        assert_eq!(failed.len(), 1);
        let original = b"Subject: Hello\r\n there\r\nFrom: a@b\r\n\r\nsecret body\r\n";
        let text = report(&e, &failed, original, ReportKind::Failure);
        assert!(text.contains("Subject: Undeliverable: Hello there\r\n"));
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains(
            "Final-Recipient: rfc822; nobody@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(text.contains("Original-Recipient: rfc822;nobody@remote.example\r\n"));
        assert!(text.contains("Original-Envelope-Id: E1\r\n"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"));
        assert!(text.contains("Content-Type: text/rfc822-headers"));
        assert!(
            !text.contains("secret body"),
            "RET=HDRS returns headers only"
        );
    }

    /// An SMTPUTF8 message's report (RFC 6533): a recipient in UTF-8 is named by the `utf-8`
    /// type in ASCII, and header fields in UTF-8 come back as `message/global-headers`.
    #[test]
    fn an_ndr_for_an_smtputf8_message_names_its_utf8_in_rfc_6533s_forms() {
        let mut e = env();
        e.smtputf8 = true;
        e.recipients[0].address = "j\u{f6}rg@m\u{fc}ller.example".into();
        let failed = reportable(&e);
        let original = "Subject: Gr\u{fc}\u{df}e\r\nFrom: a@b\r\n\r\nbody\r\n".as_bytes();
        let text = report(&e, &failed, original, ReportKind::Failure);
        assert!(
            text.contains("Final-Recipient: utf-8; j\\x{F6}rg@m\\x{FC}ller.example\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: message/global-headers\r\n"),
            "{text}"
        );
        assert!(!text.contains("text/rfc822-headers"), "{text}");
    }

    #[test]
    fn no_report_for_null_sender_or_reports() {
        let mut e = env();
        assert!(may_report(&e));
        e.mail_from.clear();
        assert!(!may_report(&e));
        let mut e = env();
        e.is_report = true;
        assert!(!may_report(&e));
    }

    #[test]
    fn success_report_says_relayed_with_a_success_status_and_the_next_hop() {
        let mut e = env();
        e.recipients[1].state = RcptState::Delivered {
            reply: "250 stored".into(),
            remote: "mx.remote.example [192.0.2.7]".into(),
        };
        let relayed = [&e.recipients[1]];
        let text = report(
            &e,
            &relayed,
            b"Subject: Hello\r\n\r\nbody\r\n",
            ReportKind::Success,
        );
        assert!(
            text.contains("Action: relayed\r\nStatus: 2.0.0\r\nRemote-MTA: dns; mx.remote.example [192.0.2.7]\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Status code: 2.0.0\r\n"),
            "the readable part gives the same status: {text}"
        );
        assert!(text.contains("Remote server: mx.remote.example [192.0.2.7]\r\n"));
        assert!(!text.contains("5.0.0"));
    }

    #[test]
    fn status_from_reply() {
        assert_eq!(status_of("250 stored"), "2.0.0");
        assert_eq!(status_of("550 5.7.1 Denied"), "5.7.1");
        assert_eq!(status_of("451 try later"), "4.0.0");
        assert_eq!(status_of("554 no"), "5.0.0");
    }
}
