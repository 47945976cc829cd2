//! Keeping the spool's disk use near the live queue, and the spool running when the disk fills:
//! compaction (old segments' few live messages written forward, so the segments can go) and
//! the reserve file (given up when the disk is full, so finishing records can still be
//! written; made again, with as much room besides, before new mail is taken again). And the
//! zeros written ahead of the records, so most syncs do not change the segment's size.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Loc, Op, SpoolError, Writer, io_err};
use crate::record::{self, Kind};

/// The current segment is closed early, once at least this big, when less than a quarter of
/// it is still live; an older segment is compacted (its live messages written forward) when
/// less than a quarter of it is live. So disk use follows the live queue, not the history.
pub(super) const COMPACT_AT: u64 = 4 << 20;
/// At most this much is moved forward per compaction step (one step a second at most).
const COMPACT_STEP_BYTES: u64 = 16 << 20;
/// Kept free on the spool's file system: deleted when the disk fills, so the records that
/// finish messages (and free their segments) can still be written; made again once there is
/// room, which is when new mail is taken again.
pub(super) const RESERVE_BYTES: usize = 4 << 20;
pub(super) const RESERVE_FILE: &str = "reserve";
/// How far ahead of its records the current segment is filled with zeros. A record written
/// over zeros leaves the file's size and block map as they were, so its fdatasync flushes the
/// data alone; a record that makes the file longer also has the file's metadata written (the
/// inode, or a journal commit on a journaled file system): 0.22 ms a sync against 0.15 on the
/// project's ext4 machines. One extension (about 700 messages of 1 KB) pays that for all.
pub(super) const ZERO_AHEAD: u64 = 1 << 20;
/// Zeros are written from this buffer, a piece at a time.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Whether the disk has room for another reserve's worth (written, synced, removed).
pub(super) fn has_room(dir: &Path) -> io::Result<()> {
    let probe = dir.join("probe");
    let room = File::create(&probe).and_then(|mut f| {
        f.write_all(&vec![0u8; RESERVE_BYTES])?;
        f.sync_all()
    });
    let _ = fs::remove_file(&probe);
    room
}

/// Writes the reserve file (whole, synced), or says why it cannot.
pub(super) fn make_reserve(dir: &Path) -> io::Result<()> {
    let path = dir.join(RESERVE_FILE);
    if fs::metadata(&path).is_ok_and(|m| m.len() == RESERVE_BYTES as u64) {
        return Ok(());
    }
    let made = File::create(&path).and_then(|mut f| {
        f.write_all(&vec![0u8; RESERVE_BYTES])?;
        f.sync_all()
    });
    if made.is_err() {
        let _ = fs::remove_file(&path);
    }
    made
}

pub(super) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

impl Writer {
    /// Before `bytes` of records are written: fills the current segment with zeros to
    /// `ZERO_AHEAD` past them when they would not fit in what is zeroed. Best effort: on a
    /// failure (a full disk) the file is cut back and the records lengthen it as they go.
    pub(super) fn zero_ahead(&mut self, bytes: u64) {
        if self.len + bytes <= self.zeroed {
            return;
        }
        let from = self.zeroed.max(self.len);
        let to = self.len + bytes + ZERO_AHEAD;
        let mut at = from;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            if let Err(e) = self.file.write_all_at(&ZEROS[..n], at) {
                tracing::debug!(error = %e, "cannot write zeros ahead in the spool segment");
                let _ = self.file.set_len(from);
                self.zeroed = from;
                return;
            }
            at += n as u64;
        }
        self.zeroed = to;
    }

    /// While refusing for storage: tries (every few seconds) to make the reserve again; once
    /// it is there, new mail is taken again.
    pub(super) fn recover(&mut self) {
        let refusing = self
            .shared
            .refusing
            .lock()
            .map(|r| r.is_some())
            .unwrap_or(false);
        if !refusing || self.last_reserve_try.elapsed() < std::time::Duration::from_secs(2) {
            return;
        }
        self.last_reserve_try = std::time::Instant::now();
        self.delete_finished_segments();
        // Room means the reserve and as much again: deleting the reserve alone must not look
        // like room, or the relay would take mail, fill the disk and refuse again at once.
        if has_room(&self.shared.dir).is_ok()
            && make_reserve(&self.shared.dir).is_ok()
            && let Ok(mut r) = self.shared.refusing.lock()
        {
            tracing::warn!("the spool's disk has room again: taking new mail");
            *r = None;
        }
    }

    /// Keeps disk use close to the live queue: closes the current segment early when it is
    /// mostly finished, and writes the few live messages of the oldest segment forward so it
    /// can be deleted (oldest first only: a later segment may hold the `Done` of an earlier
    /// message). At most one step a second, each bounded.
    pub(super) fn compact(&mut self) {
        if self.last_compaction.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        self.last_compaction = std::time::Instant::now();
        // Not while records of a failed batch wait to be written: a message finished there
        // still looks live here and would be brought back.
        if !self.unwritten.is_empty()
            || self
                .shared
                .refusing
                .lock()
                .map(|r| r.is_some())
                .unwrap_or(true)
        {
            return;
        }
        let current_live = match self.shared.index.lock() {
            Ok(i) => i.seg_bytes.get(&i.current).copied().unwrap_or(0),
            Err(_) => return,
        };
        if self.len >= COMPACT_AT && current_live.saturating_mul(4) < self.len {
            self.rotate();
        }
        // The oldest segment, if it is not the current one and is mostly finished.
        let plan: Vec<(String, Loc)> = {
            let Ok(index) = self.shared.index.lock() else {
                return;
            };
            let Some((&oldest, _)) = index.seg_live.iter().next() else {
                return;
            };
            if oldest == index.current {
                return;
            }
            let live = index.seg_bytes.get(&oldest).copied().unwrap_or(0);
            let size = fs::metadata(self.shared.segment_path(oldest))
                .map(|m| m.len())
                .unwrap_or(0);
            if live == 0 || live.saturating_mul(4) >= size.max(COMPACT_AT) {
                return;
            }
            let mut budget = COMPACT_STEP_BYTES;
            index
                .live
                .iter()
                .filter(|(_, l)| l.seg == oldest)
                .take_while(|(_, l)| {
                    let go = budget > 0;
                    budget = budget.saturating_sub(l.rec_len);
                    go
                })
                .map(|(id, l)| (id.clone(), *l))
                .collect()
        };
        if plan.is_empty() {
            return;
        }
        let mut moved = Vec::with_capacity(plan.len());
        for (id, loc) in plan {
            match self.reput(&id, loc) {
                Ok(op) => moved.push(op),
                Err(e) => {
                    tracing::warn!(id, error = %e, "cannot move a spooled message forward; compaction paused");
                    break;
                }
            }
        }
        let n = moved.len();
        self.write_batch(moved);
        tracing::debug!(messages = n, "spool compaction moved live messages forward");
    }

    /// A `Put` record for a live message, from its body and its latest envelope on disk.
    fn reput(&self, id: &str, loc: Loc) -> Result<Op, SpoolError> {
        let read = |seg: u64, offset: u64, len: u64| -> Result<Vec<u8>, SpoolError> {
            let path = self.shared.segment_path(seg);
            let mut f = File::open(&path).map_err(io_err("opening", &path))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(io_err("seeking in", &path))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf).map_err(io_err("reading", &path))?;
            Ok(buf)
        };
        let meta_rec = read(loc.meta.seg, loc.meta.offset, loc.meta.len)?;
        let decoded = record::decode(&meta_rec).ok_or_else(|| SpoolError::Io {
            op: "decoding",
            path: self.shared.segment_path(loc.meta.seg),
            source: io::Error::new(io::ErrorKind::InvalidData, "envelope record unreadable"),
        })?;
        let body = read(loc.seg, loc.body_offset, loc.body_len)?;
        let rec = record::encode(Kind::Put, id, decoded.meta, &body);
        Ok(Op::Write {
            kind: Kind::Put,
            id: id.to_string(),
            rec,
            tail: None,
            body_len: body.len(),
            ack: None,
        })
    }
}
