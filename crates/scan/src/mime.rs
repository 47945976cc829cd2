//! Just enough MIME to scan a message: its header fields, the parts of a multipart body (nested),
//! each part's content type and file name, and the decoded text of its text parts. Broken input
//! (no closing boundary, bad base64, a missing header end) yields what could be read, never an
//! error: a scanner must say something about every message.

use base64::Engine;

/// At most this many parts are looked at; a message with more is read as far as that.
const MAX_PARTS: usize = 200;
/// Nesting deeper than this is not followed.
const MAX_DEPTH: usize = 8;
/// Text decoded per message, in all parts together.
const MAX_TEXT: usize = 1 << 20;
/// A part's header fields are read from this much of its header section: a part names its type,
/// encoding and file name in a few lines, and its fields are parsed one by one (the message's
/// own header section is bounded by the SMTP layer's `max_header_size`).
const MAX_PART_HEADER: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Parsed {
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Part>,
}

#[derive(Debug, Default)]
pub struct Part {
    /// `text/plain`, lower case; `text/plain` when the part does not say.
    pub content_type: String,
    pub filename: Option<String>,
    /// Decoded text of `text/*` parts that are not attachments.
    pub text: Option<String>,
}

impl Parsed {
    /// The first header field with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `raw` into its header block and body at the first empty line.
pub fn split_header(raw: &[u8]) -> (&[u8], &[u8]) {
    if let Some(i) = find(raw, b"\r\n\r\n") {
        return (&raw[..i + 2], &raw[i + 4..]);
    }
    if let Some(i) = find(raw, b"\n\n") {
        return (&raw[..i + 1], &raw[i + 2..]);
    }
    (raw, &[])
}

/// Header fields, unfolded, in order.
pub fn header_fields(block: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
            let value = String::from_utf8_lossy(&line[colon + 1..])
                .trim()
                .to_string();
            if !name.is_empty() && !name.contains(' ') {
                out.push((name, value));
            }
        }
    }
    out
}

pub fn parse(raw: &[u8]) -> Parsed {
    let (head, body) = split_header(raw);
    let headers = header_fields(head);
    let mut parts = Vec::new();
    let mut budget = MAX_TEXT;
    walk(&headers, body, 0, &mut parts, &mut budget);
    Parsed { headers, parts }
}

fn field<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn walk(
    headers: &[(String, String)],
    body: &[u8],
    depth: usize,
    out: &mut Vec<Part>,
    budget: &mut usize,
) {
    if out.len() >= MAX_PARTS {
        return;
    }
    let ctype = field(headers, "content-type").unwrap_or("text/plain");
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime.starts_with("multipart/")
        && depth < MAX_DEPTH
        && let Some(boundary) = param(ctype, "boundary")
    {
        for part in split_multipart(body, &boundary) {
            let (h, b) = split_header(part);
            let h = &h[..h.len().min(MAX_PART_HEADER)];
            walk(&header_fields(h), b, depth + 1, out, budget);
        }
        return;
    }
    let disposition = field(headers, "content-disposition").unwrap_or("");
    let filename = param(disposition, "filename")
        .or_else(|| param(ctype, "name"))
        .map(|f| decode_words(&f));
    let attachment = disposition
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("attachment");
    let text = if mime.starts_with("text/") && !attachment && *budget > 0 {
        let encoding = field(headers, "content-transfer-encoding")
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let take = body.len().min(*budget);
        let bytes = decode(&body[..take], &encoding);
        *budget -= take;
        // Valid UTF-8 (most text) becomes the string as it is; only other bytes are replaced.
        Some(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        )
    } else {
        None
    };
    out.push(Part {
        content_type: if mime.is_empty() {
            "text/plain".into()
        } else {
            mime
        },
        filename,
        text,
    });
}

/// A parameter of a structured header value (`name="x"`, `name=x`, RFC 2231 `name*=utf-8''x`).
fn param(value: &str, name: &str) -> Option<String> {
    for piece in value.split(';').skip(1) {
        let Some((k, v)) = piece.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        if k == name {
            return Some(v.trim_matches('"').to_string());
        }
        if k == format!("{name}*") || k == format!("{name}*0") || k == format!("{name}*0*") {
            // RFC 2231: charset'language'percent-encoded; the first segment names the file's
            // start, which is enough for its extension only when there is one segment.
            let v = v.trim_matches('"');
            let text = v.splitn(3, '\'').nth(2).unwrap_or(v);
            return Some(percent_decode(text));
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 2047 encoded words in a file name (`=?utf-8?B?...?=`, `=?utf-8?Q?...?=`), decoded as far
/// as the name's extension needs.
fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("=?") {
        out.push_str(&rest[..start]);
        let word = &rest[start + 2..];
        let mut pieces = word.splitn(3, '?');
        let (_, enc, tail) = (pieces.next(), pieces.next(), pieces.next());
        let Some((enc, tail)) = enc.zip(tail) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let Some(end) = tail.find("?=") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let text = &tail[..end];
        let bytes = if enc.eq_ignore_ascii_case("b") {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default()
        } else {
            quoted_printable(text.replace('_', " ").as_bytes())
        };
        out.push_str(&String::from_utf8_lossy(&bytes));
        rest = &tail[end + 2..];
    }
    out.push_str(rest);
    out
}

fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |i| pos + i + 1);
        let line = &body[pos..end];
        let trimmed = trim_eol(line);
        if trimmed.starts_with(delim) {
            let closing = trimmed[delim.len()..].starts_with(b"--");
            if let Some(s) = start {
                // The line break before the delimiter belongs to the delimiter.
                let mut e = pos;
                if e > s && body[e - 1] == b'\n' {
                    e -= 1;
                    if e > s && body[e - 1] == b'\r' {
                        e -= 1;
                    }
                }
                parts.push(&body[s..e]);
                if parts.len() >= MAX_PARTS {
                    return parts;
                }
            }
            if closing {
                return parts;
            }
            start = Some(end);
        }
        pos = end;
    }
    // No closing delimiter: the last part runs to the end.
    if let Some(s) = start
        && s < body.len()
    {
        parts.push(&body[s..]);
    }
    parts
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn decode(body: &[u8], encoding: &str) -> Vec<u8> {
    match encoding {
        "base64" => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            // Tolerate a missing padding or trailing junk: decode what decodes.
            let usable = clean.len() - clean.len() % 4;
            base64::engine::general_purpose::STANDARD
                .decode(&clean[..usable])
                .unwrap_or_default()
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.to_vec(),
    }
}

fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'=' {
            match (body.get(i + 1), body.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => i += 3,
                (Some(b'\n'), _) => i += 2,
                (Some(h), Some(l)) => match (hex(*h), hex(*l)) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                    }
                    _ => {
                        out.push(c);
                        i += 1;
                    }
                },
                _ => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_multipart_gives_its_text_and_attachment_names() {
        let raw = b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
preamble\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9 soft=\r\nbreak\r\n--inner\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PGI+aGk8L2I+\r\n--inner--\r\n--outer\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\n\
Content-Disposition: attachment; filename*=utf-8''invoice%20May.exe\r\n\r\nAAAA\r\n--outer--\r\n";
        let p = parse(raw);
        assert_eq!(p.parts.len(), 3);
        assert_eq!(p.parts[0].text.as_deref(), Some("café softbreak"));
        assert_eq!(p.parts[1].content_type, "text/html");
        assert_eq!(p.parts[1].text.as_deref(), Some("<b>hi</b>"));
        assert_eq!(p.parts[2].filename.as_deref(), Some("invoice May.exe"));
        assert!(p.parts[2].text.is_none());
    }

    #[test]
    fn broken_input_still_gives_what_can_be_read() {
        // No closing boundary, bad base64, LF line ends, no header end.
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\n@@@@\n--b\nContent-Type: text/plain\n\nhello";
        let p = parse(raw);
        assert_eq!(p.parts.len(), 2);
        assert_eq!(p.parts[0].text.as_deref(), Some(""));
        assert_eq!(p.parts[1].text.as_deref(), Some("hello"));
        assert!(parse(b"Subject: only a header").parts.len() == 1);
        assert_eq!(decode_words("=?utf-8?B?cmVwb3J0LmRvY20=?="), "report.docm");
    }

    #[test]
    fn a_parts_header_is_read_only_as_far_as_its_bound() {
        // A part's type comes after 100,000 filler fields: past the bound, so not read.
        let filler: String = (0..100_000).map(|i| format!("X-F{i}: v\r\n")).collect();
        let raw = format!(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n{filler}Content-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n"
        );
        let p = parse(raw.as_bytes());
        assert_eq!(p.parts.len(), 1);
        assert_eq!(p.parts[0].content_type, "text/plain");
        // Within the bound it is read as ever.
        let raw = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-A: 1\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n";
        assert_eq!(parse(raw.as_bytes()).parts[0].content_type, "text/html");
    }
}
