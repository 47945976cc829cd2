//! Command lines into requests: smtp-proto's parser, the bare `<postmaster>` RFC 5321 requires,
//! and the reply for each kind of bad line.

use smtp_proto::{Error as ParseError, Request};

use crate::reply::Reply;

/// Parses one command line (CRLF or LF included) into a request, or the reply for a bad one.
pub fn parse_command(line: &[u8]) -> Result<Request<String>, Reply> {
    let mut req = Request::parse(&mut line.iter())
        .map(Request::into_owned)
        .map_err(parse_error_reply)?;
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
