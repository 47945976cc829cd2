//! An index found by linear probing from the place an entry's hash gives, with a byte of the
//! hash per place kept apart from the entries.
//!
//! A name that is not there (every external recipient's domain) costs a read of the tag bytes
//! alone, a few megabytes that stay largely in the processor's cache. A name that is there costs
//! the tag bytes and the entry at the same place, and both places are known from the hash
//! alone: `prefetch` asks for them while other work goes on (so a sender's domain and address
//! are waited for once, together), and even without it the processor reads the entry while
//! the tags are on their way, since the probe almost always ends at its first place.
//!
//! At most five places in eight are taken, so a probe meets a free place within a few bytes.

#[derive(Debug, Default)]
pub(crate) struct FlatIndex<T> {
    /// Per place: 0 when free, else a byte of the entry's hash (never 0).
    tags: Vec<u8>,
    entries: Vec<T>,
    len: usize,
}

fn tag(hash: u64) -> u8 {
    (hash as u8).max(1)
}

impl<T: Copy + Default> FlatIndex<T> {
    /// The first place to look: the hash's high bits scaled to the table (any length works).
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.tags.len() as u128) >> 64) as usize
    }

    /// Room for `n` entries in all, without growing.
    pub(crate) fn reserve(&mut self, n: usize, rehash: impl Fn(&T) -> u64) {
        let wanted = n.max(8) * 8 / 5 + 1;
        if wanted <= self.tags.len() {
            return;
        }
        let tags = std::mem::replace(&mut self.tags, vec![0; wanted]);
        let entries = std::mem::replace(&mut self.entries, vec![T::default(); wanted]);
        self.len = 0;
        for (t, e) in tags.into_iter().zip(entries) {
            if t != 0 {
                self.put(rehash(&e), e);
            }
        }
    }

    /// Starts loading what a lookup of `hash` reads: its tags and its likeliest entry.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        if !self.tags.is_empty() {
            let at = self.home(hash);
            relayward_prefetch::line(&self.tags[at]);
            relayward_prefetch::value(&self.entries[at]);
        }
    }

    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
        let tag = tag(hash);
        let mut i = self.home(hash);
        // Never more than five places in eight are taken, so a free one ends every probe.
        for _ in 0..self.tags.len() {
            let t = self.tags[i];
            if t == 0 {
                return None;
            }
            if t == tag && eq(&self.entries[i]) {
                return Some(&self.entries[i]);
            }
            i += 1;
            if i == self.tags.len() {
                i = 0;
            }
        }
        None
    }

    /// Adds an entry the caller has checked is not there yet.
    pub(crate) fn insert(&mut self, hash: u64, value: T, rehash: impl Fn(&T) -> u64) {
        if (self.len + 1) * 8 > self.tags.len() * 5 {
            self.reserve((self.len + 1) * 2, rehash);
        }
        self.put(hash, value);
    }

    fn put(&mut self, hash: u64, value: T) {
        let mut i = self.home(hash);
        while self.tags[i] != 0 {
            i += 1;
            if i == self.tags.len() {
                i = 0;
            }
        }
        self.tags[i] = tag(hash);
        self.entries[i] = value;
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_hash_and_key_through_collisions_and_growth() {
        // A weak hash on purpose: keys 0..1000 share 16 homes and three tags, so probes run
        // long, wrap around the end, and the key comparison decides.
        let hash = |k: &u32| (u64::from(*k % 16) << 60) | u64::from(*k % 3);
        let mut index = FlatIndex::default();
        for k in 0..1000u32 {
            assert!(index.find(hash(&k), |v| *v == k).is_none());
            index.insert(hash(&k), k, hash);
        }
        assert_eq!(index.len, 1000);
        assert!(index.tags.len() * 5 >= 1000 * 8, "never more than 5/8 full");
        for k in 0..1000u32 {
            assert_eq!(index.find(hash(&k), |v| *v == k), Some(&k));
            index.prefetch(hash(&k));
        }
        assert!(index.find(hash(&1000), |v| *v == 1000).is_none());
        let empty: FlatIndex<u32> = FlatIndex::default();
        assert!(empty.find(7, |_| true).is_none());
        empty.prefetch(7);
    }
}
