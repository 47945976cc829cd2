//! Bytes of a segment that are not whole records, found when the spool is opened. At the end
//! of a segment they are a write cut short by a crash (never acknowledged: the 250 comes after
//! the sync); in the middle they are damage (a bad sector, a bit flipped on the way to the disk).
//! Either way the records after them are read on — one bad record must not lose the messages
//! written after it in the same segment, nor (the segment then looking finished) the segment
//! itself — and the bytes are kept in `damaged/` for the operator, since a message in them
//! cannot be delivered.

use std::fs;
use std::path::{Path, PathBuf};

use crate::record::{self, MAGIC};

/// Where copies of unreadable bytes go, under the spool's directory.
pub(super) const DAMAGED_DIR: &str = "damaged";

/// The end of what was written to a segment: its length without the zeros written ahead of
/// the records (`room::ZERO_AHEAD`).
pub(super) fn written_end(data: &[u8]) -> usize {
    data.iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1)
}

/// The first offset at or after `from` where a whole record decodes: where the records go on
/// past unreadable bytes. (A record's CRC makes a chance match in damaged bytes as unlikely as
/// one in four billion.)
pub(super) fn next_record(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + MAGIC.len() <= data.len() {
        let found = data[at..].windows(MAGIC.len()).position(|w| w == MAGIC)?;
        at += found;
        if record::decode(&data[at..]).is_some() {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Copies `bytes`, found at `offset` of segment `seg`, to `damaged/segment-<seg>-at-<offset>.bin`
/// under the spool's directory; the path, or `None` when the copy could not be written.
pub(super) fn keep_aside(dir: &Path, seg: u64, offset: usize, bytes: &[u8]) -> Option<PathBuf> {
    let aside = dir.join(DAMAGED_DIR);
    let path = aside.join(format!("segment-{seg:010}-at-{offset}.bin"));
    let written = fs::create_dir_all(&aside).and_then(|()| fs::write(&path, bytes));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot keep a copy of unreadable spool bytes");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::Spool;
    use super::super::tests::env;
    use super::*;

    /// The one segment written so far, and its bytes.
    fn segment(dir: &Path) -> (PathBuf, Vec<u8>) {
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        found.sort();
        let path = found.into_iter().next().expect("a segment");
        let data = fs::read(&path).expect("read");
        (path, data)
    }

    async fn spool_three(dir: &Path) {
        let (spool, _) = Spool::open(dir, None).expect("open");
        for id in ["A", "B", "C"] {
            let body = format!("Subject: {id}\r\n\r\nthe body of message {id}\r\n");
            spool.put(&env(id), body.as_bytes()).await.expect("put");
        }
        spool.flush().await.expect("flush");
        drop(spool);
        // The writer thread cuts the zeros ahead off the segment as it ends, and lets go of the
        // lock after: the segment is final once the lock is free.
        let lock = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("spool.lock"))
            .expect("lock file");
        for _ in 0..500 {
            if lock.try_lock().is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the spool's writer did not end");
    }

    fn kept(dir: &Path) -> Vec<Vec<u8>> {
        let Ok(list) = fs::read_dir(dir.join(DAMAGED_DIR)) else {
            return Vec::new();
        };
        list.filter_map(|e| e.ok().map(|e| fs::read(e.path()).expect("read")))
            .collect()
    }

    #[tokio::test]
    async fn a_damaged_record_loses_only_its_own_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        spool_three(dir.path()).await;
        let (path, mut data) = segment(dir.path());
        let at = data
            .windows(21)
            .position(|w| w == b"the body of message A")
            .expect("A's body");
        // One bit flipped: "the" becomes "The".
        data[at] ^= 0x20;
        fs::write(&path, &data).expect("write");

        let (spool, found) = Spool::open(dir.path(), None).expect("reopen");
        let ids: Vec<&str> = found.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            ["B", "C"],
            "the messages after the damage are recovered"
        );
        assert!(
            spool
                .body("C")
                .await
                .expect("C's body")
                .ends_with(b"message C\r\n")
        );
        assert_eq!(spool.stats().unreadable_at_open.load(Ordering::Relaxed), 1);
        let copies = kept(dir.path());
        assert_eq!(copies.len(), 1);
        assert!(
            copies[0].windows(21).any(|w| w == b"The body of message A"),
            "the damaged bytes are kept for the operator"
        );
        drop(spool);
        // The segment still holds B and C: it is there at the next start, damage and all.
        let (_, found) = Spool::open(dir.path(), None).expect("reopen again");
        assert_eq!(found.len(), 2);
    }

    #[tokio::test]
    async fn a_write_cut_short_at_the_end_is_set_aside_and_the_rest_recovered() {
        let dir = tempfile::tempdir().expect("tempdir");
        spool_three(dir.path()).await;
        let (path, mut data) = segment(dir.path());
        // Half a record after the last whole one, and zeros after it, as a writer stopped by a
        // crash leaves them.
        let torn = record::encode(record::Kind::Put, "D", b"{}", b"never acknowledged");
        data.extend_from_slice(&torn[..torn.len() / 2]);
        data.extend_from_slice(&[0; 4096]);
        fs::write(&path, &data).expect("write");

        let (spool, found) = Spool::open(dir.path(), None).expect("reopen");
        assert_eq!(found.len(), 3);
        assert_eq!(spool.stats().unreadable_at_open.load(Ordering::Relaxed), 1);
        assert_eq!(kept(dir.path()), vec![torn[..torn.len() / 2].to_vec()]);
    }

    #[tokio::test]
    async fn a_whole_record_whose_envelope_cannot_be_read_is_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        spool_three(dir.path()).await;
        let (path, mut data) = segment(dir.path());
        let odd = record::encode(record::Kind::Put, "X", br#"{"id": 5}"#, b"a body");
        data.extend_from_slice(&odd);
        fs::write(&path, &data).expect("write");

        let (spool, found) = Spool::open(dir.path(), None).expect("reopen");
        assert_eq!(found.len(), 3);
        assert_eq!(spool.stats().unreadable_at_open.load(Ordering::Relaxed), 1);
        assert_eq!(kept(dir.path()), vec![odd]);
    }

    #[tokio::test]
    async fn a_whole_spool_has_nothing_unreadable() {
        let dir = tempfile::tempdir().expect("tempdir");
        spool_three(dir.path()).await;
        let (spool, found) = Spool::open(dir.path(), None).expect("reopen");
        assert_eq!(found.len(), 3);
        assert_eq!(spool.stats().unreadable_at_open.load(Ordering::Relaxed), 0);
        assert!(kept(dir.path()).is_empty());
    }
}
