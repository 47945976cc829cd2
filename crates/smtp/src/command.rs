//! Command lines into requests: smtp-proto's parser, the bare `<postmaster>` RFC 5321 requires,
//! and the reply for each kind of bad line.

use smtp_proto::{Error as ParseError, Request};

use crate::reply::Reply;

/// Parses one command line (CRLF or LF included) into a request, or the reply for a bad one.
pub fn parse_command(line: &[u8]) -> Result<Request<String>, Reply> {
    // RFC 3461 4: a parameter is given once; of two ORCPTs, which would be the original?
    if rcpt_parameters(line).is_some_and(|p| count_ignoring_case(p, b" ORCPT=") > 1) {
        return Err(Reply::new(
            501,
            "5.5.4 Invalid parameter ORCPT: given twice",
        ));
    }
    let utf8_orcpt = take_utf8_orcpt(line);
    let line = utf8_orcpt
        .as_ref()
        .map_or(line, |(rest, _)| rest.as_slice());
    let mut req = Request::parse(&mut line.iter())
        .map(Request::into_owned)
        .map_err(|e| match e {
            // `user@[192.0.2.1]` is RFC 5321's syntax, which smtp-proto's parser does not
            // read: say why it is refused, as the policy says for `user@192.0.2.1`.
            ParseError::InvalidRecipientAddress if names_address_literal(line) => {
                Reply::new(550, "5.7.1 IP-literal recipient domains are not accepted")
            }
            e => parse_error_reply(e),
        })?;
    if let Some((_, value)) = &utf8_orcpt
        && let Request::Rcpt { to } = &mut req
    {
        let address = std::str::from_utf8(value)
            .ok()
            .filter(|v| v.len() <= MAX_ORCPT)
            .and_then(relayward_names::from_utf8_addr_xtext)
            .ok_or_else(|| Reply::new(501, "5.5.4 Invalid parameter ORCPT"))?;
        to.orcpt = Some(format!("utf-8;{address}"));
    } else if let Request::Rcpt { to } = &mut req
        && let Some(o) = &mut to.orcpt
        && (!o.is_ascii() || o.chars().any(char::is_control))
    {
        *o = rfc822_orcpt_bytes(o)
            .ok_or_else(|| Reply::new(501, "5.5.4 Invalid parameter ORCPT"))?;
    }
    // RFC 3461 4.4: printable ASCII, at most 100 characters. It is passed on and written into
    // reports; smtp-proto decodes `+XX` to any character, line ends included.
    if let Request::Mail { from } = &req
        && from
            .env_id
            .as_deref()
            .is_some_and(|id| id.len() > 100 || !id.bytes().all(|b| (b' '..=b'~').contains(&b)))
    {
        return Err(Reply::new(
            501,
            "5.5.4 Invalid parameter ENVID: printable ASCII, at most 100 characters",
        ));
    }
    if let Some(name) = unoffered_parameter(&req) {
        return Err(Reply::new(
            555,
            format!("5.5.4 Unsupported parameter {name}"),
        ));
    }
    // `RCPT TO:<postmaster>` has no domain, and RFC 5321 4.5.1 says it must be taken; the
    // parser reads it as an empty address.
    if let Request::Rcpt { to } = &mut req
        && to.address.is_empty()
        && is_bare_postmaster(line)
    {
        to.address = "postmaster".to_string();
    }
    Ok(req)
}

/// The longest `ORCPT=utf-8;` value taken, in bytes (an address is at most 256 octets; each
/// character may be written as `\x{HEX}`).
const MAX_ORCPT: usize = 1024;

/// RFC 6533's `ORCPT=utf-8;…` on a RCPT line, as an SMTPUTF8 client passes on an original
/// recipient in UTF-8 (Postfix does): smtp-proto's parser knows only `rfc822;` and refused the
/// recipient with 501. The line without the parameter, and the parameter's value.
fn take_utf8_orcpt(line: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    const KEY: &[u8] = b" ORCPT=UTF-8;";
    let after = line.len() - rcpt_parameters(line)?.len();
    let at = after
        + line[after..]
            .windows(KEY.len())
            .position(|w| w.eq_ignore_ascii_case(KEY))?;
    let value_at = at + KEY.len();
    let end = value_at
        + line[value_at..]
            .iter()
            .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
            .unwrap_or(line.len() - value_at);
    let mut rest = line[..at].to_vec();
    rest.extend_from_slice(&line[end..]);
    Some((rest, line[value_at..end].to_vec()))
}

/// An `ORCPT=rfc822;` address with `+XX` for bytes outside ASCII, as smtp-proto gives it: each
/// byte decoded to the character of that number. The bytes put back together, when they are
/// UTF-8 (an address is ASCII or UTF-8; RFC 6533 writes the latter `utf-8;`, which is how it
/// is passed on) with no control character; `None` otherwise.
fn rfc822_orcpt_bytes(decoded: &str) -> Option<String> {
    let bytes = decoded
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes)
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
}

/// A MAIL or RCPT parameter of an extension the relay does not offer in its EHLO reply, which
/// smtp-proto's parser reads all the same. Taken, each would be a promise not kept: REQUIRETLS
/// (RFC 8689) asks that the message go on only over verified TLS, HOLDFOR and HOLDUNTIL (RFC
/// 4865) that it wait, BINARYMIME (RFC 3030) that its bytes go unchanged, where the relay
/// mends line ends. RFC 5321 4.1.1.11 answers such a parameter with 555. AUTH= is not among
/// them: a relay may take it from a client that did not authenticate, and ignore it (RFC 4954
/// 5).
fn unoffered_parameter(req: &Request<String>) -> Option<&'static str> {
    use smtp_proto::*;
    match req {
        Request::Mail { from } => [
            (from.flags & MAIL_BODY_BINARYMIME != 0, "BODY=BINARYMIME"),
            (from.flags & MAIL_REQUIRETLS != 0, "REQUIRETLS"),
            (from.hold_for != 0, "HOLDFOR"),
            (from.hold_until != 0, "HOLDUNTIL"),
            (
                from.flags & (MAIL_BY_NOTIFY | MAIL_BY_RETURN | MAIL_BY_TRACE) != 0 || from.by != 0,
                "BY",
            ),
            (from.mt_priority != 0, "MT-PRIORITY"),
            (from.solicit.is_some(), "SOLICIT"),
            (from.mtrk.is_some(), "MTRK"),
            (from.trans_id.is_some(), "TRANSID"),
            (from.flags & MAIL_CONPERM != 0, "CONPERM"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name)),
        Request::Rcpt { to } => [
            (
                to.flags & (RCPT_RRVS_REJECT | RCPT_RRVS_CONTINUE) != 0 || to.rrvs != 0,
                "RRVS",
            ),
            (to.flags & RCPT_CONNEG != 0, "CONNEG"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name)),
        _ => None,
    }
}

/// Whether a RCPT line's address has an address literal for its domain (`@[`).
fn names_address_literal(line: &[u8]) -> bool {
    rcpt_parameters(line)
        .is_some_and(|p| line[..line.len() - p.len()].windows(2).any(|w| w == b"@["))
}

/// A RCPT line's parameters: what follows the address's closing bracket.
fn rcpt_parameters(line: &[u8]) -> Option<&[u8]> {
    if !line.get(..5)?.eq_ignore_ascii_case(b"RCPT ") {
        return None;
    }
    let after = line.iter().position(|&b| b == b'>')? + 1;
    Some(&line[after..])
}

fn count_ignoring_case(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .filter(|w| w.eq_ignore_ascii_case(needle))
        .count()
}

/// Whether a RCPT line names `<postmaster>` (any letter case), parameters after it or not.
fn is_bare_postmaster(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line).to_ascii_lowercase();
    text.split_once(':')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with("<postmaster>"))
}

fn parse_error_reply(e: ParseError) -> Reply {
    match e {
        ParseError::UnknownCommand => Reply::new(500, "5.5.1 Command unrecognized"),
        ParseError::InvalidSenderAddress => Reply::new(501, "5.1.7 Bad sender address syntax"),
        ParseError::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3 Bad recipient address syntax")
        }
        ParseError::SyntaxError { syntax } => Reply::new(501, format!("5.5.4 Syntax: {syntax}")),
        ParseError::InvalidParameter { param } => {
            Reply::new(501, format!("5.5.4 Invalid parameter {param}"))
        }
        ParseError::UnsupportedParameter { param } => {
            let param: String = param
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            Reply::new(555, format!("5.5.4 Unsupported parameter {param}"))
        }
        ParseError::ResponseTooLong => Reply::new(500, "5.5.2 Line too long"),
        ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
            Reply::new(500, "5.5.2 Syntax error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_original_recipient_in_utf8_is_read_with_the_other_parameters() {
        let line = "RCPT TO:<bob@m\u{fc}ller.example> ORCPT=utf-8;b\\x{F6}b@m\\x{FC}ller.example NOTIFY=FAILURE\r\n";
        let Ok(Request::Rcpt { to }) = parse_command(line.as_bytes()) else {
            panic!("a RCPT");
        };
        assert_eq!(to.address, "bob@m\u{fc}ller.example");
        assert_eq!(
            to.orcpt.as_deref(),
            Some("utf-8;b\u{f6}b@m\u{fc}ller.example")
        );
        assert_ne!(to.flags & smtp_proto::RCPT_NOTIFY_FAILURE, 0);
        let Ok(Request::Rcpt { to }) =
            parse_command(b"RCPT TO:<x@y.example> ORCPT=rfc822;X@y.example\r\n")
        else {
            panic!("a RCPT");
        };
        assert_eq!(to.orcpt.as_deref(), Some("X@y.example"));
        let bad = parse_command(b"RCPT TO:<x@y.example> ORCPT=utf-8;a\\b\r\n");
        assert!(matches!(bad, Err(r) if r.code == 501));
        // An address in UTF-8 written in rfc822's xtext: its bytes put back together (and
        // passed on as utf-8;); bytes that are no UTF-8, or a control character: refused.
        let Ok(Request::Rcpt { to }) =
            parse_command(b"RCPT TO:<x@y.example> ORCPT=rfc822;b+C3+B6b@y.example\r\n")
        else {
            panic!("a RCPT");
        };
        assert_eq!(to.orcpt.as_deref(), Some("b\u{f6}b@y.example"));
        for bad in ["b+F6b@y.example", "b+0D+0Ab@y.example", "b+C3b@y.example"] {
            let line = format!("RCPT TO:<x@y.example> ORCPT=rfc822;{bad}\r\n");
            let r = parse_command(line.as_bytes());
            assert!(matches!(&r, Err(r) if r.code == 501), "{bad}: {r:?}");
        }
        // Parameters of extensions the EHLO reply does not offer.
        for (line, name) in [
            ("MAIL FROM:<a@y.example> REQUIRETLS", "REQUIRETLS"),
            ("MAIL FROM:<a@y.example> BODY=BINARYMIME", "BODY=BINARYMIME"),
            ("MAIL FROM:<a@y.example> HOLDFOR=3600", "HOLDFOR"),
            (
                "MAIL FROM:<a@y.example> HOLDUNTIL=2026-12-31T00:00:00Z",
                "HOLDUNTIL",
            ),
            ("MAIL FROM:<a@y.example> BY=120;R", "BY"),
            ("MAIL FROM:<a@y.example> MT-PRIORITY=3", "MT-PRIORITY"),
            ("MAIL FROM:<a@y.example> TRANSID=<t@y.example>", "TRANSID"),
            ("RCPT TO:<x@y.example> RRVS=2014-04-03T23:01:00Z", "RRVS"),
            ("RCPT TO:<x@y.example> CONNEG", "CONNEG"),
        ] {
            let r = parse_command(format!("{line}\r\n").as_bytes());
            assert!(
                matches!(&r, Err(r) if r.code == 555 && r.text == format!("5.5.4 Unsupported parameter {name}")),
                "{line}: {r:?}"
            );
        }
        for line in [
            "MAIL FROM:<a@y.example> AUTH=<>",
            "MAIL FROM:<a@y.example> BODY=8BITMIME SIZE=1000 SMTPUTF8 RET=HDRS ENVID=Q1",
            "MAIL FROM:<a@y.example> BODY=7BIT",
        ] {
            let r = parse_command(format!("{line}\r\n").as_bytes());
            assert!(matches!(r, Ok(Request::Mail { .. })), "{line}: {r:?}");
        }
        // An address literal: refused for what it is, not as bad syntax.
        for literal in ["bob@[192.0.2.1]", "bob@[IPv6:2001:db8::1]"] {
            let r = parse_command(format!("RCPT TO:<{literal}>\r\n").as_bytes());
            assert!(
                matches!(&r, Err(r) if r.code == 550 && r.text.contains("IP-literal")),
                "{literal}: {r:?}"
            );
        }
        // Given twice, in either form or both: refused, not one of them picked.
        for twice in [
            "RCPT TO:<x@y.example> ORCPT=rfc822;x@y.example ORCPT=utf-8;x@y.example\r\n",
            "RCPT TO:<x@y.example> ORCPT=utf-8;x@y.example ORCPT=rfc822;x@y.example\r\n",
            "RCPT TO:<x@y.example> ORCPT=utf-8;x@y.example ORCPT=utf-8;z@y.example\r\n",
            "RCPT TO:<x@y.example> ORCPT=rfc822;x@y.example ORCPT=rfc822;z@y.example\r\n",
        ] {
            let r = parse_command(twice.as_bytes());
            assert!(matches!(&r, Err(r) if r.code == 501), "{twice}: {r:?}");
        }
    }
}
