//! SMTP replies: a code and text, the text carrying the enhanced status code (RFC 3463).

use std::fmt;

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
            let sep = if lines.peek().is_some() { '-' } else { ' ' };
            // Replies never carry a CR or LF of their own: a line break here would let text from
            // elsewhere (a remote reply, an address) forge a second reply.
            let clean: String = line.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, clean).as_bytes());
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
}
