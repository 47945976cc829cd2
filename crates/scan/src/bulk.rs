//! Bulk fingerprinting: the same content sent to many recipients, recognised across messages,
//! connections and tenants, even when each copy greets its recipient by name or carries its own
//! tracking number.
//!
//! The body's text is normalised (lower case, letters only, markup dropped), cut into
//! overlapping three-word shingles, and summarised by 16 MinHash values grouped in 8 bands of 2.
//! Two texts share a band with probability J² (J: the share of shingles they have in common), so
//! copies that differ in a word or two (J ≈ 0.9) meet in a band almost always, and a band whose
//! two minima fall outside the personal words is shared by every copy at once; unrelated texts
//! (J of a few per cent) rarely meet. Quoted lines (`>`) and the signature (after `-- `) are left
//! out, so replies and a company's common footer do not make ordinary mail look alike. Each band counts the external recipients its content
//! reached in the last 24 hours; a message whose content has reached more than the threshold
//! (counting its own recipients) is bulk.

use std::collections::HashMap;

const SIGNATURES: usize = 16;
const BANDS: usize = 8;
const ROWS: usize = SIGNATURES / BANDS;
/// Texts shorter than this many words are not fingerprinted ("thanks, see you at 3" is sent
/// to many people by many people and is not bulk).
pub const MIN_WORDS: usize = 12;
const DAY_MS: i64 = 86_400_000;

/// The band keys of a text, or `None` when it is too short to say.
pub fn fingerprint(text: &str) -> Option<[u64; BANDS]> {
    // The text's own lines, read in place: no copy of the text without its quotes or markup.
    let mut words = Words::with_capacity(text.len() / 6);
    let mut rest = text;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(n) => (&rest[..n], &rest[n + 1..]),
            None => (rest, ""),
        };
        // Lines keep their CR: it is no letter, so it ends a word as the line end does; the
        // signature's mark is matched without it.
        if line.trim_end_matches('\r') == "-- " {
            break;
        }
        if !line.trim_start().starts_with('>') {
            words.read(line);
            words.end_word();
        }
        rest = next;
    }
    bands(&words.out)
}

/// MinHash over the three-word shingles of a text's word hashes, in bands.
fn bands(words: &[u64]) -> Option<[u64; BANDS]> {
    if words.len() < MIN_WORDS {
        return None;
    }
    let mut mins = [u64::MAX; SIGNATURES];
    for w in words.windows(3) {
        let shingle = mix(w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42));
        for (i, m) in mins.iter_mut().enumerate() {
            // One multiply per signature: a seeded, odd-multiplier hash of a well-mixed value.
            let h = (shingle ^ SEEDS[i]).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            if h < *m {
                *m = h;
            }
        }
    }
    let mut bands = [0u64; BANDS];
    for (b, band) in bands.iter_mut().enumerate() {
        let mut h = (b as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for m in &mins[b * ROWS..(b + 1) * ROWS] {
            h = mix(h ^ m);
        }
        *band = h;
    }
    Some(bands)
}

/// Hashes of the words of letters only, lower case, as the text is read; digits and punctuation
/// split words and are dropped, so per-copy numbers and dates do not change the fingerprint.
/// `<...>` tags are left out so HTML and plain copies of one text read alike: a tag ends a word,
/// and a tag left open runs to the end. No string per word. ASCII, most of most mail, is taken
/// a byte at a time; other characters are decoded and lower-cased by Unicode's rules (the same
/// hashes either way).
struct Words {
    out: Vec<u64>,
    h: u64,
    len: usize,
    in_tag: bool,
}

impl Words {
    fn with_capacity(n: usize) -> Words {
        Words {
            out: Vec::with_capacity(n),
            h: FNV_START,
            len: 0,
            in_tag: false,
        }
    }

    fn end_word(&mut self) {
        end_word(&mut self.out, &mut self.h, &mut self.len);
    }

    fn read(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let (mut h, mut len) = (self.h, self.len);
        let mut i = 0;
        while i < bytes.len() {
            if self.in_tag {
                match memchr::memchr(b'>', &bytes[i..]) {
                    Some(close) => {
                        i += close + 1;
                        self.in_tag = false;
                    }
                    None => break,
                }
                continue;
            }
            // A run of ASCII letters, most of most text: one multiply a letter. `b | 0x20` is a
            // letter's lower case, and a letter only for letters.
            let start = i;
            while let Some(&b) = bytes.get(i) {
                let lower = b | 0x20;
                if !lower.is_ascii_lowercase() {
                    break;
                }
                h = (h ^ u64::from(lower)).wrapping_mul(FNV_PRIME);
                i += 1;
            }
            len += i - start;
            let Some(&b) = bytes.get(i) else {
                break;
            };
            if b.is_ascii() {
                i += 1;
                self.in_tag = b == b'<';
                end_word(&mut self.out, &mut h, &mut len);
                continue;
            }
            let Some(c) = text.get(i..).and_then(|t| t.chars().next()) else {
                break;
            };
            i += c.len_utf8();
            if c.is_alphabetic() {
                for l in c.to_lowercase() {
                    let mut buf = [0u8; 4];
                    for b in l.encode_utf8(&mut buf).bytes() {
                        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
                    }
                }
                len += 1;
            } else {
                end_word(&mut self.out, &mut h, &mut len);
            }
        }
        (self.h, self.len) = (h, len);
    }
}

/// A word of two letters or more is kept; the next starts afresh.
fn end_word(out: &mut Vec<u64>, h: &mut u64, len: &mut usize) {
    if *len >= 2 {
        out.push(*h);
    }
    (*h, *len) = (FNV_START, 0);
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// SplitMix64's finaliser: a fixed, well-mixing permutation of 64-bit values (the same on every
/// node, so fingerprints could be shared across a cluster).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const SEEDS: [u64; SIGNATURES] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6c,
    0xc0ac_29b7_c97c_50dd,
    0x3f84_d5b5_b547_0917,
    0x9216_d5d9_8979_fb1b,
    0xd131_0ba6_98df_b5ac,
    0x2ffd_72db_d01a_dfb7,
    0xb8e1_afed_6a26_7e96,
    0xba7c_9045_f12c_7f99,
    0x24a1_9947_b391_6cf7,
    0x0801_f2e2_858e_fcf1,
    0x6369_2e20_e3c4_0b6b,
];

#[derive(Debug, Clone, Copy)]
struct Seen {
    first: i64,
    recipients: u32,
}

/// Recipients reached per band over the last 24 hours. One process's memory; entries leave 24
/// hours after their content was first seen (a campaign that goes on is counted afresh).
///
/// In a cluster (`share`), each node also keeps what the other nodes' copies of a band reached
/// (their latest counts, as they saved them) and adds it to its own; it hands out the bands
/// whose count changed, for the others. Only bands that reached two recipients or more on a
/// node are handed out: one-off mail, most of it, stays where it was seen.
#[derive(Debug, Default)]
pub struct BulkTracker {
    bands: HashMap<u64, Seen>,
    last_prune: i64,
    /// Cluster mode: bands whose own count changed since `take_changed`.
    changed: Option<std::collections::HashSet<u64>>,
    /// Cluster mode: other nodes' counts per (node, band), and their sum per band.
    others: HashMap<(u16, u64), Seen>,
    others_sum: HashMap<u64, u32>,
    nodes: Vec<String>,
}

/// What the tracker says of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkCount {
    /// External recipients this content has reached in 24 h, this message included.
    pub recipients: u32,
}

/// One band's count on one node: (band, first seen in Unix ms, recipients reached).
pub type BandCount = (u64, i64, u32);

impl BulkTracker {
    /// Cluster mode: count with the other nodes (see the type's note).
    pub fn share(&mut self) {
        self.changed.get_or_insert_with(Default::default);
    }

    /// Counts `recipients` more for this content and says how many it has reached (on every
    /// node, in cluster mode).
    pub fn record(&mut self, bands: &[u64; BANDS], recipients: u32, now: i64) -> BulkCount {
        self.prune(now);
        let mut most = 0;
        for b in bands {
            let seen = self.bands.entry(*b).or_insert(Seen {
                first: now,
                recipients: 0,
            });
            if now - seen.first >= DAY_MS {
                *seen = Seen {
                    first: now,
                    recipients: 0,
                };
            }
            seen.recipients = seen.recipients.saturating_add(recipients);
            let mine = seen.recipients;
            if let Some(changed) = &mut self.changed
                && mine >= 2
            {
                changed.insert(*b);
            }
            let theirs = self.others_sum.get(b).copied().unwrap_or(0);
            most = most.max(mine.saturating_add(theirs));
        }
        BulkCount { recipients: most }
    }

    /// Cluster mode: the bands whose own count changed since the last call, for the others.
    pub fn take_changed(&mut self) -> Vec<BandCount> {
        let Some(changed) = &mut self.changed else {
            return Vec::new();
        };
        let bands = &self.bands;
        changed
            .drain()
            .filter_map(|b| bands.get(&b).map(|s| (b, s.first, s.recipients)))
            .collect()
    }

    /// Cluster mode: a band's count on another node, as it saved it (replacing what it said
    /// before). Counts from more than 24 hours ago are left out.
    pub fn set_other(&mut self, node: &str, (band, first, recipients): BandCount, now: i64) {
        if now - first >= DAY_MS {
            return;
        }
        let n = match self.nodes.iter().position(|x| x == node) {
            Some(n) => n,
            None => {
                self.nodes.push(node.to_string());
                self.nodes.len() - 1
            }
        };
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        let before = self
            .others
            .insert((n, band), Seen { first, recipients })
            .map_or(0, |s| s.recipients);
        let sum = self.others_sum.entry(band).or_insert(0);
        *sum = sum.saturating_sub(before).saturating_add(recipients);
    }

    fn prune(&mut self, now: i64) {
        if now - self.last_prune < 60_000 {
            return;
        }
        self.last_prune = now;
        self.bands.retain(|_, s| now - s.first < DAY_MS);
        let sums = &mut self.others_sum;
        self.others.retain(|(_, band), s| {
            let keep = now - s.first < DAY_MS;
            if !keep && let Some(sum) = sums.get_mut(band) {
                *sum = sum.saturating_sub(s.recipients);
            }
            keep
        });
        self.others_sum.retain(|_, n| *n > 0);
    }

    pub fn len(&self) -> usize {
        self.bands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bands.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first, character-at-a-time forms of the word hashes and of stripping the markup:
    /// `Words`, which reads the text once in place, must give the same fingerprints (bands are
    /// shared between a cluster's nodes, and counted across versions).
    fn word_hashes_by_char(text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        let (mut h, mut len) = (FNV_START, 0usize);
        for c in text.chars().chain(std::iter::once(' ')) {
            if c.is_alphabetic() {
                for l in c.to_lowercase() {
                    let mut buf = [0u8; 4];
                    for b in l.encode_utf8(&mut buf).bytes() {
                        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
                    }
                }
                len += 1;
            } else {
                if len >= 2 {
                    out.push(h);
                }
                (h, len) = (FNV_START, 0);
            }
        }
        out
    }

    fn strip_markup_by_char(text: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in text.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => {
                    in_tag = false;
                    out.push(' ');
                }
                _ if !in_tag => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// The fingerprint as it was first computed: the own lines joined, the markup stripped,
    /// the words hashed, each step on a copy.
    fn fingerprint_by_copies(text: &str) -> Option<[u64; BANDS]> {
        let own: String = text
            .lines()
            .take_while(|l| l.trim_end_matches('\r') != "-- ")
            .filter(|l| !l.trim_start().starts_with('>'))
            .collect::<Vec<_>>()
            .join("\n");
        bands(&word_hashes_by_char(&strip_markup_by_char(&own)))
    }

    #[test]
    fn texts_read_in_place_hash_as_the_character_forms_did() {
        for text in [
            "",
            "a",
            "ab",
            "Dear Alice, your order 18812 ships today.",
            "<p>Hello <b>World</b></p> a > b <i unclosed",
            "Grüße aus München, ÉCOLE Straße İstanbul ǅemal ΣΊΣΥΦΟΣ — ok",
            "日本語のテキスト mixed with English words and 数字 123",
            "tabs\tand\r\nline ends\nand-hyphens_underscores'quotes'",
            "x<<y>>z <a href=\"http://e.example/?q=1\">link</a> >> <",
            "a tag <span\n> quoted\nthat spans</span> lines",
        ] {
            let mut words = Words::with_capacity(0);
            words.read(text);
            words.end_word();
            assert_eq!(
                words.out,
                word_hashes_by_char(&strip_markup_by_char(text)),
                "{text:?}"
            );
        }
        let letter = LETTER.repeat(40);
        let texts = [
            letter.clone(),
            format!("<html><p>{letter}</p>\r\n<p class=\"x\n y\">Ünïcode wörds {LETTER}</p>"),
            format!(
                "{LETTER}\r\n> {LETTER} quoted\r\nmore <b\r\n> {LETTER}\r\n-- \r\nsig {LETTER}"
            ),
            format!("{LETTER} <unclosed {LETTER}"),
            format!("{LETTER}\n\n  > {OTHER}\r\r\n{LETTER}\n-- \nsignature {OTHER}"),
            format!("{LETTER}\r\n--\r\n{LETTER}\r\n-- \r\r\n{OTHER}"),
            format!("{LETTER}\r\n-- \r\n{OTHER}"),
        ];
        for text in &texts {
            assert!(fingerprint(text).is_some());
            assert_eq!(fingerprint(text), fingerprint_by_copies(text), "{text:?}");
        }
    }

    const OTHER: &str = "The quarterly board meeting moves to Thursday at ten in the large room \
        on the third floor; please bring the revised budget and the hiring plan for review.";

    const LETTER: &str = "We are pleased to offer you an exclusive discount on all our premium \
        garden furniture this spring, with free delivery to your door and a two year guarantee \
        on every chair, table and parasol in the catalogue.";

    #[test]
    fn personalised_copies_share_a_band_and_other_texts_do_not() {
        let a = fingerprint(&format!("Dear Alice, {LETTER} Order 18812.")).expect("long enough");
        let b = fingerprint(&format!("Dear Bob, {LETTER} Order 99120.")).expect("long enough");
        let html =
            fingerprint(&format!("<p>Dear <b>Carol</b>,</p><p>{LETTER}</p>")).expect("long enough");
        assert!(a.iter().zip(&b).any(|(x, y)| x == y));
        assert!(a.iter().zip(&html).any(|(x, y)| x == y));
        let other = fingerprint(OTHER).expect("long enough");
        assert!(a.iter().zip(&other).all(|(x, y)| x != y));
        assert!(fingerprint("thanks, see you at 3").is_none());
    }

    #[test]
    fn counts_add_up_per_content_and_leave_after_a_day() {
        let mut t = BulkTracker::default();
        let f = fingerprint(LETTER).expect("long enough");
        for n in 1..=5 {
            assert_eq!(t.record(&f, 1, 1_000).recipients, n);
        }
        assert_eq!(t.record(&f, 10, 2_000).recipients, 15);
        assert_eq!(t.record(&f, 1, 1_000 + DAY_MS).recipients, 1);
    }

    #[test]
    fn in_a_cluster_a_campaign_counts_on_every_node() {
        let bands = fingerprint(LETTER).expect("long enough");
        let mut here = BulkTracker::default();
        here.share();
        let mut there = BulkTracker::default();
        there.share();
        // Two recipients there: shared; one here alone would not be.
        there.record(&bands, 2, 1_000);
        assert!(here.take_changed().is_empty());
        for (band, first, n) in there.take_changed() {
            here.set_other("there", (band, first, n), 1_000);
        }
        assert_eq!(here.record(&bands, 3, 2_000).recipients, 5);
        // A newer count from the same node replaces the older one.
        there.record(&bands, 4, 3_000);
        for (band, first, n) in there.take_changed() {
            here.set_other("there", (band, first, n), 3_000);
        }
        assert_eq!(here.record(&bands, 1, 4_000).recipients, 4 + 6);
        // After 24 hours the other node's counts are gone too.
        let later = 1_000 + DAY_MS + 60_000;
        assert_eq!(here.record(&bands, 1, later).recipients, 1);
    }
}
