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
    let own: String = text
        .lines()
        .take_while(|l| l.trim_end_matches('\r') != "-- ")
        .filter(|l| !l.trim_start().starts_with('>'))
        .collect::<Vec<_>>()
        .join("\n");
    let words = word_hashes(&strip_markup(&own));
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

/// Hashes of the words of letters only, lower case; digits and punctuation split words and are
/// dropped, so per-copy numbers and dates do not change the fingerprint. Hashed as they are read:
/// no string per word.
fn word_hashes(text: &str) -> Vec<u64> {
    let mut out = Vec::with_capacity(text.len() / 6);
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

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Drops `<...>` tags so HTML and plain copies of one text read alike.
fn strip_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
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
#[derive(Debug, Default)]
pub struct BulkTracker {
    bands: HashMap<u64, Seen>,
    last_prune: i64,
}

/// What the tracker says of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkCount {
    /// External recipients this content has reached in 24 h, this message included.
    pub recipients: u32,
}

impl BulkTracker {
    /// Counts `recipients` more for this content and says how many it has reached.
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
            most = most.max(seen.recipients);
        }
        BulkCount { recipients: most }
    }

    fn prune(&mut self, now: i64) {
        if now - self.last_prune < 60_000 {
            return;
        }
        self.last_prune = now;
        self.bands.retain(|_, s| now - s.first < DAY_MS);
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
        let other = fingerprint(
            "The quarterly board meeting moves to Thursday at ten in the large room on the \
             third floor; please bring the revised budget and the hiring plan for review.",
        )
        .expect("long enough");
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
}
