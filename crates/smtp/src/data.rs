//! The DATA body decoder: dot-unstuffing, the end-of-data mark, line-ending normalisation.
//!
//! SMTP smuggling works when two servers disagree on where a message ends. Here the end is only
//! `CRLF . CRLF` with both line ends real CRLFs; a bare LF or bare CR never ends a line that could
//! end the data. Bare LF and bare CR inside the body are normalised to CRLF (and counted), so the
//! body we spool and later send on with dot-stuffing has one unambiguous line structure: a
//! `\n.\n` sent to smuggle a second message stays inside the first message's body as text.

use memchr::memchr2;

pub struct DataDecoder {
    body: Vec<u8>,
    limit: usize,
    /// Start of the current line in `body`.
    line_start: usize,
    /// Length and first byte of the current line, tracked even once the body is over the limit.
    line_len: usize,
    line_first: u8,
    /// The previous line ended with a real CRLF (true at the start of DATA).
    prev_crlf: bool,
    pending_cr: bool,
    overflow: bool,
    bare_line_ends: usize,
}

/// What the body's buffer starts with when the client declared no size (most messages are a few
/// kilobytes; the buffer doubles as it fills).
const START: usize = 8 * 1024;
/// The most a declared size (`MAIL FROM ... SIZE=`) reserves before the bytes arrive: a client
/// cannot make the relay hold much memory for a message it has not sent.
const MAX_START: usize = 64 * 1024;

impl DataDecoder {
    pub fn new(limit: usize) -> DataDecoder {
        DataDecoder::expecting(limit, None)
    }

    /// A decoder whose buffer starts at the size the client declared, within bounds.
    pub fn expecting(limit: usize, declared: Option<usize>) -> DataDecoder {
        let start = declared
            .map_or(START, |d| d.saturating_add(1024))
            .min(MAX_START)
            .min(limit);
        DataDecoder {
            body: Vec::with_capacity(start),
            limit,
            line_start: 0,
            line_len: 0,
            line_first: 0,
            prev_crlf: true,
            pending_cr: false,
            overflow: false,
            bare_line_ends: 0,
        }
    }

    /// Feeds bytes; returns how many were used once the end-of-data mark is found.
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut rest = input;
        loop {
            if self.pending_cr {
                if rest.is_empty() {
                    // Whether this CR is half of a CRLF is known only with the next byte.
                    return None;
                }
                self.pending_cr = false;
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                    if self.end_line(true) {
                        return Some(input.len() - rest.len());
                    }
                } else {
                    self.end_line(false);
                }
                continue;
            }
            if rest.is_empty() {
                return None;
            }
            match memchr2(b'\r', b'\n', rest) {
                None => {
                    self.push(rest);
                    return None;
                }
                Some(i) => {
                    self.push(&rest[..i]);
                    let c = rest[i];
                    rest = &rest[i + 1..];
                    if c == b'\r' {
                        self.pending_cr = true;
                    } else {
                        self.end_line(false);
                    }
                }
            }
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.line_len == 0 {
            self.line_first = bytes[0];
        }
        self.line_len += bytes.len();
        if !self.overflow {
            if self.body.len() + bytes.len() > self.limit {
                self.overflow = true;
                self.body = Vec::new();
            } else {
                self.body.extend_from_slice(bytes);
            }
        }
    }

    /// Ends the current line; true when it was the end-of-data mark.
    fn end_line(&mut self, crlf: bool) -> bool {
        let is_dot = self.line_len == 1 && self.line_first == b'.';
        if crlf && self.prev_crlf && is_dot {
            if !self.overflow {
                self.body.truncate(self.line_start);
            }
            return true;
        }
        if !crlf {
            self.bare_line_ends += 1;
        }
        if !self.overflow {
            if self.line_len > 0 && self.line_first == b'.' {
                self.body.remove(self.line_start);
            }
            if self.body.len() + 2 > self.limit {
                self.overflow = true;
                self.body = Vec::new();
            } else {
                self.body.extend_from_slice(b"\r\n");
            }
        }
        self.line_start = self.body.len();
        self.line_len = 0;
        self.prev_crlf = crlf;
        false
    }

    /// Memory the body holds now.
    pub fn held(&self) -> usize {
        self.body.capacity()
    }

    /// Stops keeping the body (the rest is still read, to find its end): the memory is given
    /// back now.
    pub fn drop_body(&mut self) {
        self.overflow = true;
        self.body = Vec::new();
    }

    /// True when the message went past the size limit (its bytes were read and dropped).
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// How many bare LF or bare CR line ends were normalised to CRLF.
    pub fn bare_line_ends(&self) -> usize {
        self.bare_line_ends
    }

    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// Whether a message's header section (its lines before the first empty one, or the whole
/// message when it has no empty line) is longer than `limit`; reads at most `limit` + 2 bytes.
pub fn header_section_over(body: &[u8], limit: usize) -> bool {
    if body.len() <= limit || body.starts_with(b"\r\n") {
        return false;
    }
    let window = &body[..body.len().min(limit.saturating_add(2))];
    // A blank line found here ends a header section of at most `limit` bytes.
    memchr::memmem::find(window, b"\r\n\r\n").is_none()
}

/// Normalises bare CR and bare LF to CRLF in a BDAT body (no dot handling: BDAT is counted).
pub fn normalise_line_ends(body: Vec<u8>) -> (Vec<u8>, usize) {
    let mut bare = 0;
    let needs = body.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || body[i - 1] != b'\r'))
            || (b == b'\r' && body.get(i + 1) != Some(&b'\n'))
    });
    if !needs {
        return (body, 0);
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' if body.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => {
                bare += 1;
                out.extend_from_slice(b"\r\n");
            }
            b => out.push(b),
        }
        i += 1;
    }
    (out, bare)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_header_section_is_measured_to_its_empty_line() {
        let h = |n: usize| format!("Subject: {}\r\n", "x".repeat(n - 11));
        // 20 bytes of header, then a body: within a 20-byte limit, not within 19.
        let m = format!("{}\r\nbody that is much longer than the limit\r\n", h(20));
        assert!(!header_section_over(m.as_bytes(), 20));
        assert!(header_section_over(m.as_bytes(), 19));
        // No empty line: the whole message is its header section.
        let only = h(40);
        assert!(!header_section_over(only.as_bytes(), 40));
        assert!(header_section_over(only.as_bytes(), 39));
        // No header at all.
        assert!(!header_section_over(b"\r\nbody longer than the limit", 4));
        // An empty line past the limit does not save it.
        let late = format!("{}\r\nbody", h(100));
        assert!(header_section_over(late.as_bytes(), 50));
    }

    use super::*;

    fn decode(input: &[u8], limit: usize) -> (Option<usize>, DataDecoder) {
        let mut d = DataDecoder::new(limit);
        let r = d.feed(input);
        (r, d)
    }

    #[test]
    fn unstuffs_and_ends_at_crlf_dot_crlf() {
        let input = b"Subject: x\r\n\r\n..leading dot\r\nline\r\n.\r\nMAIL FROM:<a@b>\r\n";
        let (end, d) = decode(input, 1000);
        assert_eq!(end, Some(input.len() - b"MAIL FROM:<a@b>\r\n".len()));
        assert_eq!(d.into_body(), b"Subject: x\r\n\r\n.leading dot\r\nline\r\n");
    }

    #[test]
    fn end_mark_split_across_reads() {
        let mut d = DataDecoder::new(1000);
        assert_eq!(d.feed(b"a\r"), None);
        assert_eq!(d.feed(b"\n."), None);
        assert_eq!(d.feed(b"\r"), None);
        assert_eq!(d.feed(b"\nQUIT\r\n"), Some(1));
        assert_eq!(d.into_body(), b"a\r\n");
    }

    #[test]
    fn smuggling_with_bare_lf_or_cr_does_not_end_the_data() {
        for trick in [
            &b"a\n.\nMAIL FROM:<x@y>\r\n"[..],
            &b"a\r\n.\nMAIL FROM:<x@y>\r\n"[..],
            &b"a\n.\r\nMAIL FROM:<x@y>\r\n"[..],
            &b"a\r.\rMAIL FROM:<x@y>\r\n"[..],
            &b"a\r\n.\rMAIL FROM:<x@y>\r\n"[..],
        ] {
            let (end, d) = decode(trick, 1000);
            assert_eq!(
                end,
                None,
                "{:?} must not end the data",
                String::from_utf8_lossy(trick)
            );
            assert!(d.bare_line_ends() > 0);
        }
        let mut d = DataDecoder::new(1000);
        d.feed(b"a\n.\nMAIL FROM:<x@y>\r\n");
        assert_eq!(d.feed(b".\r\n"), Some(3));
        // The smuggled lines stay in the body as text, with normalised line ends (the lone dot
        // is unstuffed like any line that starts with a dot).
        assert_eq!(d.into_body(), b"a\r\n\r\nMAIL FROM:<x@y>\r\n");
    }

    #[test]
    fn overflow_reads_to_the_end_and_keeps_nothing() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\r\n.\r\n");
        let (end, d) = decode(&input, 100);
        assert_eq!(end, Some(input.len()));
        assert!(d.overflowed());
        assert!(d.into_body().is_empty());
    }

    #[test]
    fn bdat_normalisation() {
        let (out, bare) = normalise_line_ends(b"a\nb\rc\r\nd".to_vec());
        assert_eq!(out, b"a\r\nb\r\nc\r\nd");
        assert_eq!(bare, 2);
    }

    #[test]
    fn a_declared_size_reserves_at_most_64_kib_before_the_bytes_arrive() {
        let big = 50 * 1024 * 1024;
        assert_eq!(
            DataDecoder::expecting(big, Some(big)).body.capacity(),
            MAX_START
        );
        assert_eq!(DataDecoder::expecting(big, None).body.capacity(), START);
        assert_eq!(
            DataDecoder::expecting(big, Some(2000)).body.capacity(),
            3024
        );
        assert_eq!(
            DataDecoder::expecting(1000, Some(big)).body.capacity(),
            1000
        );
        // The body still grows past the start to the limit.
        let mut d = DataDecoder::expecting(big, Some(10));
        let line = [b'a'; 998];
        let mut input = Vec::new();
        for _ in 0..100 {
            input.extend_from_slice(&line);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\n");
        assert_eq!(d.feed(&input), Some(input.len()));
        assert_eq!(d.into_body().len(), 100_000);
    }
}
