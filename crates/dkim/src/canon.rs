//! A message's header fields as they stand, and the two canonicalisations of RFC 6376 3.4
//! ("simple" and "relaxed") for header fields and for the body.

use aws_lc_rs::digest::{Context, Digest, SHA256};

/// One header field: its name and the whole field as it appears (name, colon, value, folded
/// lines and the final line end).
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub name: &'a str,
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The value after the colon, unfolded and trimmed.
    pub fn value(&self) -> String {
        let v = self
            .raw
            .iter()
            .position(|&b| b == b':')
            .map_or(&b""[..], |i| &self.raw[i + 1..]);
        let s: String = String::from_utf8_lossy(v)
            .chars()
            .filter(|&c| c != '\r' && c != '\n')
            .collect();
        s.trim().to_string()
    }

    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Header fields in order and the body. A message without a blank line is all header.
pub fn split<'m>(message: &'m [u8]) -> (Vec<Field<'m>>, &'m [u8]) {
    let mut fields: Vec<Field<'m>> = Vec::new();
    let mut pos = 0;
    let mut start: Option<usize> = None;
    let mut name_end = 0;
    let flush = |fields: &mut Vec<Field<'m>>, start: Option<usize>, name_end: usize, end: usize| {
        if let Some(s) = start
            && let Ok(name) = std::str::from_utf8(&message[s..name_end])
        {
            let name = name.trim();
            if !name.is_empty() {
                fields.push(Field {
                    name,
                    raw: &message[s..end],
                });
            }
        }
    };
    while pos < message.len() {
        let end = memchr_nl(&message[pos..]).map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        let content = trim_eol(line);
        if content.is_empty() {
            flush(&mut fields, start, name_end, pos);
            return (fields, &message[end..]);
        }
        if content[0] == b' ' || content[0] == b'\t' {
            // A continuation of the field above (or of nothing, then ignored).
        } else {
            flush(&mut fields, start, name_end, pos);
            match content.iter().position(|&b| b == b':') {
                Some(colon) => {
                    start = Some(pos);
                    name_end = pos + colon;
                }
                None => start = None,
            }
        }
        pos = end;
    }
    flush(&mut fields, start, name_end, message.len());
    (fields, &message[message.len()..])
}

fn memchr_nl(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    Simple,
    Relaxed,
}

impl Canon {
    pub fn parse(s: &str) -> Option<Canon> {
        match s.trim().to_ascii_lowercase().as_str() {
            "simple" => Some(Canon::Simple),
            "relaxed" => Some(Canon::Relaxed),
            _ => None,
        }
    }
}

/// `c=` of a signature: header and body canonicalisation (`simple` when absent).
pub fn parse_c(tag: Option<&str>) -> Option<(Canon, Canon)> {
    let Some(t) = tag else {
        return Some((Canon::Simple, Canon::Simple));
    };
    let mut parts = t.splitn(2, '/');
    let h = Canon::parse(parts.next()?)?;
    let b = match parts.next() {
        Some(b) => Canon::parse(b)?,
        None => Canon::Simple,
    };
    Some((h, b))
}

/// A header field in canonical form, with its line end.
pub fn header(canon: Canon, field: &Field) -> Vec<u8> {
    match canon {
        Canon::Simple => {
            let mut v = field.raw.to_vec();
            if !v.ends_with(b"\r\n") {
                if v.ends_with(b"\n") {
                    v.pop();
                }
                v.extend_from_slice(b"\r\n");
            }
            v
        }
        Canon::Relaxed => relaxed_header(field.name, field.raw),
    }
}

/// RFC 6376 3.4.2: lower-case name, unfolded value with white space runs as one space,
/// trimmed, `name:value` and CRLF.
pub fn relaxed_header(name: &str, raw: &[u8]) -> Vec<u8> {
    let value = raw
        .iter()
        .position(|&b| b == b':')
        .map_or(&b""[..], |i| &raw[i + 1..]);
    let mut out = Vec::with_capacity(raw.len());
    out.extend(name.trim().bytes().map(|b| b.to_ascii_lowercase()));
    out.push(b':');
    let mut space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The SHA-256 of the canonical body, only its first `limit` octets when an `l=` is given.
pub fn body_hash(canon: Canon, body: &[u8], limit: Option<u64>) -> Digest {
    match canonical_as_it_stands(canon, body) {
        Some(canonical) => {
            let mut ctx = Limited::new(limit);
            ctx.update(canonical);
            ctx.ctx.finish()
        }
        None => body_hash_line_by_line(canon, body, limit),
    }
}

/// The canonical body when it is the body itself less its trailing blank lines, as for most mail:
/// every line ends in CRLF and, for relaxed, no line holds a tab, two spaces in a row or a space
/// before its end. One pass without early exits, which the compiler vectorises; `None` sends the
/// body through the rules line by line.
fn canonical_as_it_stands(canon: Canon, body: &[u8]) -> Option<&[u8]> {
    if !body.ends_with(b"\r\n") || body.first() == Some(&b'\n') {
        return None;
    }
    let relaxed = canon == Canon::Relaxed;
    let pairs = body.iter().zip(&body[1..]);
    let unusual = if relaxed {
        pairs.fold(0u8, |acc, (&a, &b)| {
            let bare_lf = b == b'\n' && a != b'\r';
            let space = a == b'\t' || (a == b' ' && (b == b' ' || b == b'\r'));
            acc | u8::from(bare_lf) | u8::from(space)
        })
    } else {
        pairs.fold(0u8, |acc, (&a, &b)| {
            acc | u8::from(b == b'\n' && a != b'\r')
        })
    };
    if unusual != 0 {
        return None;
    }
    let mut end = body.len();
    while end >= 4 && &body[end - 4..end] == b"\r\n\r\n" {
        end -= 2;
    }
    // Blank lines alone: the rules below say what they become in each canonicalisation.
    (end > 2).then_some(&body[..end])
}

/// RFC 6376 3.4.3 and 3.4.4 applied line by line.
fn body_hash_line_by_line(canon: Canon, body: &[u8], limit: Option<u64>) -> Digest {
    let mut ctx = Limited::new(limit);
    let mut blank_lines = 0usize;
    let mut any = false;
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    if body.ends_with(b"\n") || body.is_empty() {
        lines.pop();
    }
    let mut buf = Vec::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        buf.clear();
        match canon {
            Canon::Simple => buf.extend_from_slice(line),
            Canon::Relaxed => {
                let mut space = false;
                for &b in line {
                    if b == b' ' || b == b'\t' {
                        space = true;
                    } else {
                        if space {
                            buf.push(b' ');
                        }
                        space = false;
                        buf.push(b);
                    }
                }
            }
        }
        if buf.is_empty() {
            blank_lines += 1;
            continue;
        }
        for _ in 0..blank_lines {
            ctx.update(b"\r\n");
        }
        blank_lines = 0;
        ctx.update(&buf);
        ctx.update(b"\r\n");
        any = true;
    }
    if !any && canon == Canon::Simple {
        // RFC 6376 3.4.3: an empty body is one line end in simple canonicalisation.
        ctx.update(b"\r\n");
    }
    ctx.ctx.finish()
}

struct Limited {
    ctx: Context,
    left: Option<u64>,
}

impl Limited {
    fn new(limit: Option<u64>) -> Limited {
        Limited {
            ctx: Context::new(&SHA256),
            left: limit,
        }
    }

    fn update(&mut self, data: &[u8]) {
        match &mut self.left {
            None => self.ctx.update(data),
            Some(left) => {
                let n = (*left).min(data.len() as u64) as usize;
                self.ctx.update(&data[..n]);
                *left -= n as u64;
            }
        }
    }
}

/// `tag=value` pairs of a signature or key record; white space inside values is kept except
/// where the caller strips it (`b=`, `bh=`, `p=`).
pub fn tags(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn no_space(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The field with the value of its `b=` tag taken out (what was signed).
pub fn without_b(raw: &[u8]) -> Vec<u8> {
    // Find `b=` as a tag name: at the value's start or after a `;`, with white space allowed.
    let colon = raw.iter().position(|&b| b == b':').map_or(0, |i| i + 1);
    let mut i = colon;
    let mut tag_start = true;
    while i < raw.len() {
        let b = raw[i];
        if tag_start && !b.is_ascii_whitespace() {
            if b == b'b' {
                let mut j = i + 1;
                while j < raw.len() && raw[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < raw.len() && raw[j] == b'=' {
                    let value_start = j + 1;
                    let value_end = raw[value_start..]
                        .iter()
                        .position(|&b| b == b';')
                        .map_or(raw.len(), |p| value_start + p);
                    let mut out = raw[..value_start].to_vec();
                    if value_end < raw.len() {
                        out.extend_from_slice(&raw[value_end..]);
                    } else {
                        // Keep the field's line end.
                        let tail = &raw[value_start..];
                        let nl = tail.len() - tail.trim_ascii_end().len();
                        out.extend_from_slice(&tail[tail.len() - nl..]);
                    }
                    return out;
                }
            }
            tag_start = false;
        }
        if b == b';' {
            tag_start = true;
        }
        i += 1;
    }
    raw.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_header_unfolds_and_squeezes() {
        let raw = b"SubJect :  A \t lot\r\n\t of   space  \r\n";
        assert_eq!(
            relaxed_header("SubJect ", raw),
            b"subject:A lot of space\r\n"
        );
    }

    #[test]
    fn relaxed_and_simple_bodies_follow_the_rfc_examples() {
        // RFC 6376 3.4.6.
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        let relaxed = body_hash(Canon::Relaxed, body, None);
        let expected = aws_lc_rs::digest::digest(&SHA256, b" C\r\nD E\r\n");
        assert_eq!(relaxed.as_ref(), expected.as_ref());
        let simple = body_hash(Canon::Simple, body, None);
        let expected = aws_lc_rs::digest::digest(&SHA256, b" C \r\nD \t E\r\n");
        assert_eq!(simple.as_ref(), expected.as_ref());
        let empty = body_hash(Canon::Simple, b"", None);
        assert_eq!(
            empty.as_ref(),
            aws_lc_rs::digest::digest(&SHA256, b"\r\n").as_ref()
        );
        let empty = body_hash(Canon::Relaxed, b"\r\n\r\n", None);
        assert_eq!(
            empty.as_ref(),
            aws_lc_rs::digest::digest(&SHA256, b"").as_ref()
        );
    }

    #[test]
    fn the_quick_way_hashes_what_the_rules_line_by_line_hash() {
        // Every body of up to seven octets from the octets the rules care about: the one pass
        // over a body that needs no change must agree with the rules wherever it answers.
        const OCTETS: &[u8] = b"a \t\r\n";
        let mut quick = 0;
        for len in 0..=7u32 {
            for n in 0..OCTETS.len().pow(len) {
                let mut rest = n;
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = OCTETS[rest % OCTETS.len()];
                        rest /= OCTETS.len();
                        b
                    })
                    .collect();
                for canon in [Canon::Simple, Canon::Relaxed] {
                    if canonical_as_it_stands(canon, &body).is_some() {
                        quick += 1;
                    }
                    for limit in [None, Some(3)] {
                        assert_eq!(
                            body_hash(canon, &body, limit).as_ref(),
                            body_hash_line_by_line(canon, &body, limit).as_ref(),
                            "{canon:?} {limit:?} {:?}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                }
            }
        }
        // The quick way is taken, not only the rules.
        assert!(quick > 1_000, "{quick}");
        let mail = b"Hello,\r\n\r\nthe report is attached.\r\n\r\n\r\n";
        assert_eq!(
            canonical_as_it_stands(Canon::Relaxed, mail),
            Some(&b"Hello,\r\n\r\nthe report is attached.\r\n"[..])
        );
        assert_eq!(canonical_as_it_stands(Canon::Relaxed, b"a  b\r\n"), None);
        assert_eq!(canonical_as_it_stands(Canon::Relaxed, b"a\tb\r\n"), None);
        assert_eq!(canonical_as_it_stands(Canon::Simple, b"a\nb\r\n"), None);
    }

    #[test]
    fn fields_keep_their_folded_lines_and_the_body_follows_the_blank_line() {
        let m = b"From: a@b\r\nSubject: one\r\n two\r\nnot a field\r\nTo: c@d\r\n\r\nbody\r\n";
        let (fields, body) = split(m);
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        assert_eq!(names, ["From", "Subject", "To"]);
        assert_eq!(fields[1].raw, b"Subject: one\r\n two\r\n");
        assert_eq!(body, b"body\r\n");
    }

    #[test]
    fn the_b_value_is_taken_out_wherever_it_stands() {
        let raw = b"DKIM-Signature: v=1; b=abc\r\n\tdef; bh=xyz; d=x\r\n";
        assert_eq!(
            without_b(raw),
            b"DKIM-Signature: v=1; b=; bh=xyz; d=x\r\n".to_vec()
        );
        let raw = b"ARC-Seal: i=1; cv=none;\r\n b=abc\r\n def\r\n";
        assert_eq!(
            without_b(raw),
            b"ARC-Seal: i=1; cv=none;\r\n b=\r\n".to_vec()
        );
    }
}
