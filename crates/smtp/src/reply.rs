//! SMTP replies: a code and text, the text carrying the enhanced status code (RFC 3463).

use std::fmt;
use std::io::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// One or more lines, separated by `\n`, without the code.
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            text: text.into(),
        }
    }

    pub fn ok() -> Reply {
        Reply::new(250, "2.0.0 OK")
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the reply in wire form (`code-text` lines, the last with `code text`).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { b'-' } else { b' ' };
            // Written to an in-memory buffer, which cannot fail.
            let _ = write!(out, "{}", self.code);
            out.push(sep);
            // Replies never carry a CR or LF of their own: a line break here would let text from
            // elsewhere (a remote reply, an address) forge a second reply. (Both are ASCII, so
            // dropping their bytes leaves the rest valid UTF-8.)
            out.extend(line.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text.replace('\n', " / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_wire_form() {
        let mut out = Vec::new();
        Reply::new(250, "relay.example Hello\nPIPELINING\nSIZE 10").write_to(&mut out);
        assert_eq!(
            out,
            b"250-relay.example Hello\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn line_breaks_in_the_text_cannot_forge_a_reply() {
        let mut out = Vec::new();
        Reply::new(550, "5.1.1 <a@b.example>\r\n250 2.0.0 OK\rcaf\u{e9}").write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).as_deref(),
            Ok("550-5.1.1 <a@b.example>\r\n550 250 2.0.0 OKcaf\u{e9}\r\n")
        );
    }
}
