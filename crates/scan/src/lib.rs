//! Outbound content scanning (SPEC section 6): a score, a verdict and the rules that fired,
//! computed before the end-of-DATA reply. The guard reads the verdict: spam and bulk are
//! "suspicious".
//!
//! This first rule set is deliberately small: the GTUBE test string (spam), bulk-mail headers
//! (bulk), and the header From domain, which the relay compares with the envelope sender.
//! The full rule set, bulk fingerprinting and Rspamd come with the scanning issue.

/// Clean, bulk or spam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// What the guard counts as suspicious.
    pub fn suspicious(self) -> bool {
        self != Verdict::Clean
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub score: f32,
    pub verdict: Verdict,
    pub rules: Vec<&'static str>,
    /// Domain of the header `From:` address, lower-cased, when there is one.
    pub header_from_domain: Option<String>,
}

/// The Generic Test for Unsolicited Bulk Email: any scanner must call a message holding it spam.
const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Score at and above which a message is spam, and bulk.
pub const SPAM_SCORE: f32 = 6.0;
pub const BULK_SCORE: f32 = 3.0;

/// Scans a whole message (headers and body, CRLF line ends). Reads at most the first 1 MiB of
/// the body for content rules, so a 35 MB message costs the same as a 1 MiB one.
pub fn scan(message: &[u8]) -> Scan {
    let header_end = find(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2);
    let headers = &message[..header_end];
    let body_end = message.len().min(header_end + (1 << 20));
    let body = &message[header_end.min(body_end)..body_end];
    let mut score = 0.0f32;
    let mut rules = Vec::new();
    if find(body, GTUBE).is_some() || find(headers, GTUBE).is_some() {
        score += 1000.0;
        rules.push("GTUBE");
    }
    let precedence = header(headers, b"precedence").map(|v| v.trim().to_ascii_lowercase());
    if matches!(precedence.as_deref(), Some("bulk" | "list" | "junk")) {
        score += BULK_SCORE;
        rules.push("PRECEDENCE_BULK");
    }
    if header(headers, b"list-unsubscribe").is_some() {
        score += BULK_SCORE;
        rules.push("LIST_UNSUBSCRIBE");
    }
    let verdict = if score >= SPAM_SCORE && rules.contains(&"GTUBE") || score >= 100.0 {
        Verdict::Spam
    } else if score >= BULK_SCORE {
        Verdict::Bulk
    } else {
        Verdict::Clean
    };
    Scan {
        score,
        verdict,
        rules,
        header_from_domain: header(headers, b"from").and_then(|v| address_domain(&v)),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The first header field `name` (case-insensitive), unfolded.
fn header(headers: &[u8], name: &[u8]) -> Option<String> {
    let mut lines = headers.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':'
        {
            let mut value = String::from_utf8_lossy(&line[name.len() + 1..]).into_owned();
            while let Some(next) = lines.peek() {
                if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                    let next = next.strip_suffix(b"\r").unwrap_or(next);
                    value.push(' ');
                    value.push_str(String::from_utf8_lossy(next).trim());
                    lines.next();
                } else {
                    break;
                }
            }
            return Some(value);
        }
    }
    None
}

/// `Name <user@Example.ORG>` or `user@example.org` → `example.org`.
fn address_domain(v: &str) -> Option<String> {
    let inner = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.trim(),
    };
    let (_, domain) = inner.rsplit_once('@')?;
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty() && !d.contains(char::is_whitespace)).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtube_is_spam_bulk_headers_are_bulk_plain_mail_is_clean() {
        let spam = b"From: a@contoso.example\r\nSubject: x\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
        assert_eq!(scan(spam).verdict, Verdict::Spam);
        let bulk = b"From: News <news@Contoso.Example>\r\nPrecedence: bulk\r\nList-Unsubscribe:\r\n <mailto:u@contoso.example>\r\n\r\nhello\r\n";
        let s = scan(bulk);
        assert_eq!(s.verdict, Verdict::Bulk);
        assert_eq!(s.header_from_domain.as_deref(), Some("contoso.example"));
        let clean = b"From: a@contoso.example\r\nSubject: lunch\r\n\r\nPrecedence: bulk in the body is not a header\r\n";
        assert_eq!(scan(clean).verdict, Verdict::Clean);
    }
}
