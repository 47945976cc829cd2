// Over 800 lines: 140 are its tests; the segment format, its writer thread and its replay must change together.
//! The segment log and its writer thread (group commit).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::envelope::Envelope;
use crate::record::{self, Kind};

mod damage;
mod gather;
mod room;
use room::{RESERVE_BYTES, RESERVE_FILE, has_room, is_no_space, make_reserve};

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// At most this much is gathered into one write + fdatasync.
const BATCH_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O error while {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("spool is full: {used} bytes used of the {limit} allowed (storage.max_spool_size)")]
    Full { used: u64, limit: u64 },
    #[error("spool is refusing new mail: the disk is full ({0})")]
    NoSpace(String),
    #[error("spool has shut down")]
    Closed,
    #[error("message {0} is not in the spool")]
    NotFound(String),
    #[error("spool {0} is in use by another process (a running node); stop it first")]
    InUse(PathBuf),
    #[error("envelope of message {id} cannot be encoded: {source}")]
    Encode {
        id: String,
        source: serde_json::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Figures for `/metrics`.
#[derive(Debug, Default)]
pub struct SpoolStats {
    pub fsyncs: AtomicU64,
    pub records: AtomicU64,
    pub bytes_on_disk: AtomicU64,
    pub live_messages: AtomicU64,
    pub segments: AtomicU64,
    pub write_errors: AtomicU64,
    /// Ranges of bytes that were not whole records when the spool was opened (`log/damage.rs`).
    pub unreadable_at_open: AtomicU64,
}

#[derive(Clone, Copy)]
struct Loc {
    seg: u64,
    body_offset: u64,
    body_len: u64,
    /// The whole `Put` record's length (what the message costs its segment).
    rec_len: u64,
    /// Where the message's latest envelope is: its `Put` or a later `Update` record.
    meta: At,
}

/// A record's place: segment, offset, length.
#[derive(Clone, Copy)]
struct At {
    seg: u64,
    offset: u64,
    len: u64,
}

#[derive(Default)]
struct Index {
    live: HashMap<String, Loc>,
    /// Live messages per segment, oldest segment first.
    seg_live: BTreeMap<u64, usize>,
    /// Bytes of live `Put` records per segment.
    seg_bytes: BTreeMap<u64, u64>,
    /// Bytes of every live `Put` record: what `max_spool_size` counts.
    live_bytes: u64,
    current: u64,
}

impl Index {
    fn add(&mut self, id: String, loc: Loc) {
        if let Some(old) = self.live.insert(id, loc) {
            self.forget(old);
        }
        *self.seg_live.entry(loc.seg).or_default() += 1;
        *self.seg_bytes.entry(loc.seg).or_default() += loc.rec_len;
        self.live_bytes += loc.rec_len;
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.live.remove(id) {
            self.forget(old);
        }
    }

    fn forget(&mut self, old: Loc) {
        dec(&mut self.seg_live, old.seg);
        if let Some(b) = self.seg_bytes.get_mut(&old.seg) {
            *b = b.saturating_sub(old.rec_len);
        }
        self.live_bytes = self.live_bytes.saturating_sub(old.rec_len);
    }

    fn updated(&mut self, id: &str, at: At) {
        if let Some(l) = self.live.get_mut(id) {
            l.meta = at;
        }
    }
}

struct Shared {
    dir: PathBuf,
    index: Mutex<Index>,
    stats: SpoolStats,
    max_bytes: Option<u64>,
    /// Why new mail is refused for storage right now, if it is (the disk filled up).
    refusing: Mutex<Option<String>>,
    /// `spool.lock`, locked for as long as the spool is open: two processes never write one
    /// spool (a node started twice, or a spool adopted while its node still runs).
    _lock: File,
}

impl Shared {
    fn segment_path(&self, seg: u64) -> PathBuf {
        segment_path(&self.dir, seg)
    }
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("segment-{seg:010}.log"))
}

type Ack = oneshot::Sender<Result<(), SpoolError>>;

enum Op {
    Write {
        kind: Kind,
        id: String,
        rec: Vec<u8>,
        /// A large body, written after `rec` rather than copied into it.
        tail: Option<Arc<Vec<u8>>>,
        body_len: usize,
        ack: Option<Ack>,
    },
    Sync(Ack),
}

impl Op {
    /// The bytes it writes.
    fn len(&self) -> usize {
        match self {
            Op::Write { rec, tail, .. } => rec.len() + tail.as_ref().map_or(0, |t| t.len()),
            Op::Sync(_) => 0,
        }
    }
}

/// Bodies at least this large are written from the caller's buffer (`put_shared`), not copied
/// into their record: one copy of a large message the fewer while it is spooled.
const SHARED_FROM: usize = 64 * 1024;

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Op>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and returns every unfinished message found there,
    /// in the order they were first spooled. `max_bytes` caps the spool's size on disk.
    pub fn open(dir: &Path, max_bytes: Option<u64>) -> Result<(Spool, Vec<Envelope>), SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let lock_path = dir.join("spool.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("opening", &lock_path))?;
        // A handle of this process just dropped lets go once its writer thread has finished
        // (milliseconds): a short wait tells that from another process's spool.
        let mut tries = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if tries < 300 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(SpoolError::InUse(dir.to_path_buf()));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io_err("locking", &lock_path)(e));
                }
            }
        }
        let mut segs: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let entry = entry.map_err(io_err("listing", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("segment-")
                .and_then(|s| s.strip_suffix(".log"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                segs.push(n);
            }
        }
        segs.sort_unstable();

        let mut index = Index::default();
        let mut envelopes: HashMap<String, (u64, Envelope)> = HashMap::new();
        let mut order = 0u64;
        let mut bytes_on_disk = 0u64;
        let mut unreadable = 0u64;
        for &seg in &segs {
            let path = segment_path(dir, seg);
            let mut data = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(io_err("reading", &path))?;
            bytes_on_disk += data.len() as u64;
            index.seg_live.insert(seg, 0);
            let mut pos = 0usize;
            let end = damage::written_end(&data);
            loop {
                while let Some(rec) = record::decode(&data[pos..]) {
                    match rec.kind {
                        Kind::Put => match serde_json::from_slice::<Envelope>(rec.meta) {
                            Ok(env) => {
                                let at = At {
                                    seg,
                                    offset: pos as u64,
                                    len: rec.total_len as u64,
                                };
                                let loc = Loc {
                                    seg,
                                    body_offset: (pos + rec.body_offset) as u64,
                                    body_len: rec.body_len as u64,
                                    rec_len: rec.total_len as u64,
                                    meta: at,
                                };
                                index.add(rec.id.to_string(), loc);
                                // A message compacted forward keeps its first place in the order.
                                let first = envelopes.get(rec.id).map(|(o, _)| *o);
                                let o = first.unwrap_or_else(|| {
                                    order += 1;
                                    order
                                });
                                envelopes.insert(rec.id.to_string(), (o, env));
                            }
                            Err(e) => {
                                // Whole, but not an envelope this version reads: kept aside,
                                // as the segment goes once the messages it holds are finished.
                                unreadable += 1;
                                let kept = damage::keep_aside(
                                    dir,
                                    seg,
                                    pos,
                                    &data[pos..pos + rec.total_len],
                                )
                                .map(|p| p.display().to_string())
                                .unwrap_or_default();
                                tracing::error!(id = rec.id, segment = seg, error = %e, kept,
                                    "spooled envelope cannot be read; the message is not delivered, a copy of its record is kept");
                            }
                        },
                        Kind::Update => {
                            if let (Some(slot), Ok(env)) = (
                                envelopes.get_mut(rec.id),
                                serde_json::from_slice::<Envelope>(rec.meta),
                            ) {
                                slot.1 = env;
                                index.updated(
                                    rec.id,
                                    At {
                                        seg,
                                        offset: pos as u64,
                                        len: rec.total_len as u64,
                                    },
                                );
                            }
                        }
                        Kind::Done => {
                            envelopes.remove(rec.id);
                            index.remove(rec.id);
                        }
                    }
                    pos += rec.total_len;
                }
                if pos >= end {
                    break;
                }
                // Bytes that are not a whole record: kept aside, and the records after them
                // read on (`log/damage.rs`).
                unreadable += 1;
                let next = damage::next_record(&data, pos + 1);
                let until = next.unwrap_or(end);
                let kept = damage::keep_aside(dir, seg, pos, &data[pos..until])
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                match next {
                    Some(next) => {
                        tracing::error!(
                            segment = seg,
                            offset = pos,
                            bytes = next - pos,
                            kept,
                            "spool segment damaged: bytes that are not a record, with records after them (a message in them cannot be delivered; a copy is kept); the records after them are read"
                        );
                        pos = next;
                    }
                    None => {
                        tracing::warn!(
                            segment = seg,
                            offset = pos,
                            bytes = end - pos,
                            kept,
                            "spool segment ends in an incomplete record (a write cut short, never acknowledged); ignored, a copy is kept"
                        );
                        break;
                    }
                }
            }
        }
        let mut recovered: Vec<(u64, Envelope)> = envelopes.into_values().collect();
        recovered.sort_by_key(|(o, _)| *o);

        index.current = segs.last().copied().unwrap_or(0) + 1;
        index.seg_live.insert(index.current, 0);
        let path = segment_path(dir, index.current);
        let file = new_segment(&path).map_err(io_err("creating", &path))?;
        sync_dir(dir)?;
        // On a full disk the relay still starts: it refuses new mail and delivers what it has
        // until the reserve can be made again.
        let refusing = has_room(dir)
            .and_then(|()| make_reserve(dir))
            .err()
            .map(|e| format!("no room for {RESERVE_BYTES} bytes in reserve: {e}"));
        if let Some(why) = &refusing {
            tracing::error!(dir = %dir.display(), "{why}; refusing new mail until there is room");
        }

        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
            stats: SpoolStats::default(),
            max_bytes,
            refusing: Mutex::new(refusing),
            _lock: lock,
        });
        shared
            .stats
            .bytes_on_disk
            .store(bytes_on_disk, Ordering::Relaxed);
        shared
            .stats
            .unreadable_at_open
            .store(unreadable, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            file,
            len: 0,
            zeroed: 0,
            unwritten: Vec::new(),
            gather: gather::Gather::default(),
            last_compaction: std::time::Instant::now(),
            last_reserve_try: std::time::Instant::now(),
        };
        writer.delete_finished_segments();
        writer.publish_counts();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err("starting the writer thread for", dir))?;
        Ok((
            Spool { shared, tx },
            recovered.into_iter().map(|(_, e)| e).collect(),
        ))
    }

    /// Spools a new message; returns once it is durable (fdatasync done).
    pub async fn put(&self, env: &Envelope, body: &[u8]) -> Result<(), SpoolError> {
        let meta = self.admit(env, body.len())?;
        let rec = record::encode(Kind::Put, &env.id, &meta, body);
        self.write_put(env, rec, None, body.len()).await
    }

    /// As `put`, with a body the caller keeps using: a large one is written from the caller's
    /// buffer instead of being copied into the record.
    pub async fn put_shared(&self, env: &Envelope, body: Arc<Vec<u8>>) -> Result<(), SpoolError> {
        if body.len() < SHARED_FROM {
            return self.put(env, &body).await;
        }
        let meta = self.admit(env, body.len())?;
        let rec = record::encode_head(Kind::Put, &env.id, &meta, &body, 0);
        let body_len = body.len();
        self.write_put(env, rec, Some(body), body_len).await
    }

    /// Whether a new message of `body_len` bytes may be spooled (room on the disk and under
    /// `max_bytes`); its envelope encoded when it may.
    fn admit(&self, env: &Envelope, body_len: usize) -> Result<Vec<u8>, SpoolError> {
        if let Some(why) = self.refusing() {
            return Err(SpoolError::NoSpace(why));
        }
        if let Some(limit) = self.shared.max_bytes {
            // The live queue counts, not the history waiting to be compacted away.
            let used = self.shared.index.lock().map(|i| i.live_bytes).unwrap_or(0);
            if used + body_len as u64 > limit {
                return Err(SpoolError::Full { used, limit });
            }
        }
        serde_json::to_vec(env).map_err(|source| SpoolError::Encode {
            id: env.id.clone(),
            source,
        })
    }

    async fn write_put(
        &self,
        env: &Envelope,
        rec: Vec<u8>,
        tail: Option<Arc<Vec<u8>>>,
        body_len: usize,
    ) -> Result<(), SpoolError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Op::Write {
                kind: Kind::Put,
                id: env.id.clone(),
                rec,
                tail,
                body_len,
                ack: Some(ack),
            })
            .map_err(|_| SpoolError::Closed)?;
        done.await.map_err(|_| SpoolError::Closed)?
    }

    /// Records a new delivery state. Not awaited: losing it can only repeat a delivery attempt.
    pub fn update(&self, env: &Envelope) {
        match serde_json::to_vec(env) {
            Ok(meta) => {
                let rec = record::encode(Kind::Update, &env.id, &meta, &[]);
                self.send(Kind::Update, &env.id, rec);
            }
            Err(e) => tracing::error!(id = %env.id, error = %e, "cannot encode envelope update"),
        }
    }

    /// Marks a message finished; its space is reclaimed once its segment holds nothing live.
    pub fn done(&self, id: &str) {
        let rec = record::encode(Kind::Done, id, &[], &[]);
        self.send(Kind::Done, id, rec);
    }

    fn send(&self, kind: Kind, id: &str, rec: Vec<u8>) {
        let op = Op::Write {
            kind,
            id: id.to_string(),
            rec,
            tail: None,
            body_len: 0,
            ack: None,
        };
        if self.tx.send(op).is_err() {
            tracing::warn!(id, "spool is closed; state change not recorded");
        }
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Waits until everything handed to the spool so far is durable.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Op::Sync(ack))
            .map_err(|_| SpoolError::Closed)?;
        done.await.map_err(|_| SpoolError::Closed)?
    }

    /// The size of a spooled message's body; `None` when it is not in the spool.
    pub fn body_len(&self, id: &str) -> Option<usize> {
        let index = self.shared.index.lock().ok()?;
        index.live.get(id).map(|loc| loc.body_len as usize)
    }

    /// Reads a spooled message's body.
    pub async fn body(&self, id: &str) -> Result<Vec<u8>, SpoolError> {
        self.body_start(id, usize::MAX).await
    }

    /// Reads at most the first `max` bytes of a spooled message's body.
    pub async fn body_start(&self, id: &str, max: usize) -> Result<Vec<u8>, SpoolError> {
        // A compaction may move the message (and delete its old segment) between finding it
        // and reading it: then it is found again at its new place.
        let mut tries = 0;
        loop {
            let loc = {
                let index = self.shared.index.lock().map_err(|_| SpoolError::Closed)?;
                index.live.get(id).copied()
            }
            .ok_or_else(|| SpoolError::NotFound(id.to_string()))?;
            let path = self.shared.segment_path(loc.seg);
            let read = tokio::task::spawn_blocking(move || {
                let mut f = File::open(&path).map_err(io_err("opening", &path))?;
                f.seek(SeekFrom::Start(loc.body_offset))
                    .map_err(io_err("seeking in", &path))?;
                let mut buf = vec![0u8; (loc.body_len as usize).min(max)];
                f.read_exact(&mut buf).map_err(io_err("reading", &path))?;
                Ok(buf)
            })
            .await
            .map_err(|_| SpoolError::Closed)?;
            tries += 1;
            if read.is_ok() || tries >= 3 {
                return read;
            }
        }
    }

    /// Why new mail is refused for storage right now (the disk filled up), if it is.
    pub fn refusing(&self) -> Option<String> {
        self.shared.refusing.lock().ok().and_then(|r| r.clone())
    }

    pub fn stats(&self) -> &SpoolStats {
        &self.shared.stats
    }
}

fn dec(seg_live: &mut BTreeMap<u64, usize>, seg: u64) {
    if let Some(n) = seg_live.get_mut(&seg) {
        *n = n.saturating_sub(1);
    }
}

/// A new segment file, written at positions (not appended): the writer fills zeros ahead of
/// its records.
fn new_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Where the next record goes: the end of the records written to the current segment.
    len: u64,
    /// The current segment's length on disk: its records, then zeros written ahead of them.
    zeroed: u64,
    /// `Done` and `Update` records of a batch that failed to write: written again first, so a
    /// full disk does not make finished messages look unfinished after a restart.
    unwritten: Vec<Op>,
    /// The batch's small records, written at once.
    gather: gather::Gather,
    last_compaction: std::time::Instant,
    last_reserve_try: std::time::Instant,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        loop {
            let first = match rx.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Quiet: retry what did not get written, see whether the disk has room
                    // again, move on with compaction.
                    if !self.unwritten.is_empty() {
                        self.write_batch(Vec::new());
                    }
                    self.recover();
                    self.compact();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            let mut bytes = 0usize;
            while bytes < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        bytes += op.len();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.write_batch(batch);
            self.recover();
            self.compact();
        }
        // Every handle is gone: make what was written durable before the thread ends (without
        // the zeros ahead, which only a running writer needs).
        let _ = self.file.set_len(self.len);
        if let Err(e) = self.file.sync_data() {
            tracing::error!(error = %e, "final spool sync failed");
        }
    }

    fn write_batch(&mut self, batch: Vec<Op>) {
        let start = self.len;
        let seg = self.current();
        let mut needs_sync = false;
        let mut placed: Vec<(Kind, String, At, Option<Loc>)> = Vec::with_capacity(batch.len());
        let mut acks: Vec<Ack> = Vec::new();
        let mut result: Result<(), io::Error> = Ok(());
        let mut retry: Vec<Op> = Vec::new();
        let earlier = std::mem::take(&mut self.unwritten);
        if !earlier.is_empty() {
            needs_sync = true;
        }
        let bytes: u64 = earlier.iter().chain(&batch).map(|op| op.len() as u64).sum();
        self.zero_ahead(bytes);
        for op in earlier.into_iter().chain(batch) {
            match op {
                Op::Write {
                    kind,
                    id,
                    rec,
                    tail,
                    body_len,
                    ack,
                } => {
                    if result.is_ok() {
                        let parts: &[&[u8]] = match &tail {
                            Some(tail) => &[&rec, tail],
                            None => &[&rec],
                        };
                        result = self.gather.write(&self.file, self.len, parts);
                    }
                    let rec_len = rec.len() + tail.as_ref().map_or(0, |t| t.len());
                    let at = At {
                        seg,
                        offset: self.len,
                        len: rec_len as u64,
                    };
                    let loc = (kind == Kind::Put).then(|| Loc {
                        seg,
                        body_offset: self.len + (rec_len - body_len) as u64,
                        body_len: body_len as u64,
                        rec_len: rec_len as u64,
                        meta: at,
                    });
                    self.len += rec_len as u64;
                    if ack.is_none() && kind != Kind::Put {
                        // Kept in case the batch fails: nobody waits for it, but it matters.
                        retry.push(Op::Write {
                            kind,
                            id: id.clone(),
                            rec,
                            tail,
                            body_len,
                            ack: None,
                        });
                    }
                    placed.push((kind, id, at, loc));
                    // A message's whole record is durable before anything points at it (and
                    // before the segment it was moved from can go).
                    if kind == Kind::Put {
                        needs_sync = true;
                    }
                    if let Some(ack) = ack {
                        needs_sync = true;
                        acks.push(ack);
                    }
                }
                Op::Sync(ack) => {
                    needs_sync = true;
                    acks.push(ack);
                }
            }
        }
        let gathered = self.gather.flush(&self.file);
        if result.is_ok() {
            result = gathered;
        }
        if result.is_ok() && needs_sync {
            result = self.file.sync_data();
            self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let path = self.shared.segment_path(seg);
        if let Err(e) = result {
            // Cut the failed batch off so no half record sits in front of later good ones.
            self.shared
                .stats
                .write_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, segment = %path.display(), "spool write failed; batch refused");
            if self.file.set_len(start).is_err() {
                self.rotate();
            } else {
                self.zeroed = start;
            }
            self.len = start;
            // The finishing and state records are written again with the next batch.
            self.unwritten = retry;
            if is_no_space(&e) {
                let why = format!("{e} while writing {}", path.display());
                if let Ok(mut r) = self.shared.refusing.lock()
                    && r.is_none()
                {
                    tracing::error!(
                        "disk full: refusing new mail until there is room again ({why})"
                    );
                    *r = Some(why);
                }
                // Room for the records that finish messages, so their segments can go.
                let _ = fs::remove_file(self.shared.dir.join(RESERVE_FILE));
                self.last_reserve_try = std::time::Instant::now();
            }
            let kind = e.kind();
            let full = is_no_space(&e);
            for ack in acks {
                let _ = ack.send(Err(if full {
                    SpoolError::NoSpace(e.to_string())
                } else {
                    SpoolError::Io {
                        op: "writing",
                        path: path.clone(),
                        source: io::Error::new(kind, e.to_string()),
                    }
                }));
            }
            return;
        }
        self.shared
            .stats
            .records
            .fetch_add(placed.len() as u64, Ordering::Relaxed);
        self.shared
            .stats
            .bytes_on_disk
            .fetch_add(self.len - start, Ordering::Relaxed);
        if let Ok(mut index) = self.shared.index.lock() {
            for (kind, id, at, loc) in placed {
                match (kind, loc) {
                    (Kind::Put, Some(loc)) => index.add(id, loc),
                    (Kind::Done, _) => index.remove(&id),
                    (Kind::Update, _) => index.updated(&id, at),
                    _ => {}
                }
            }
            // Counted before the acks go out: a client told 250 finds its message counted.
            self.shared
                .stats
                .live_messages
                .store(index.live.len() as u64, Ordering::Relaxed);
        }
        for ack in acks {
            let _ = ack.send(Ok(()));
        }
        if self.len >= SEGMENT_BYTES {
            self.rotate();
        }
        self.delete_finished_segments();
        self.publish_counts();
    }

    fn current(&self) -> u64 {
        self.shared.index.lock().map(|i| i.current).unwrap_or(0)
    }

    /// Starts a new segment. On failure the old one stays current and the next batch retries.
    fn rotate(&mut self) {
        let next = self.current() + 1;
        let path = self.shared.segment_path(next);
        let opened = new_segment(&path)
            .map_err(io_err("creating", &path))
            .and_then(|f| sync_dir(&self.shared.dir).map(|_| f));
        match opened {
            Ok(file) => {
                // A closed segment keeps its records only: the zeros ahead are given back.
                if let Err(e) = self.file.set_len(self.len) {
                    tracing::warn!(error = %e, "cannot cut the closed spool segment to its records");
                }
                if let Err(e) = self.file.sync_data() {
                    tracing::error!(error = %e, "sync of the closed spool segment failed");
                }
                self.file = file;
                self.len = 0;
                self.zeroed = 0;
                if let Ok(mut index) = self.shared.index.lock() {
                    index.current = next;
                    index.seg_live.insert(next, 0);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot start a new spool segment"),
        }
    }

    /// Removes segments oldest first while they hold nothing live. Only a prefix may go: a later
    /// segment can hold the `Done` of a message spooled in an earlier one.
    fn delete_finished_segments(&self) {
        let Ok(mut index) = self.shared.index.lock() else {
            return;
        };
        let current = index.current;
        while let Some((&seg, &live)) = index.seg_live.iter().next() {
            if seg == current || live > 0 {
                break;
            }
            let path = self.shared.segment_path(seg);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            index.seg_bytes.remove(&seg);
            match fs::remove_file(&path) {
                Ok(()) => {
                    self.shared.stats.bytes_on_disk.fetch_sub(
                        size.min(self.shared.stats.bytes_on_disk.load(Ordering::Relaxed)),
                        Ordering::Relaxed,
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, segment = %path.display(), "cannot remove finished spool segment");
                    break;
                }
            }
            index.seg_live.remove(&seg);
        }
    }

    fn publish_counts(&self) {
        if let Ok(mut index) = self.shared.index.lock() {
            // A drained backlog gives its index memory back.
            if index.live.capacity() > 4096 && index.live.len() * 4 < index.live.capacity() {
                index.live.shrink_to_fit();
            }
            let s = &self.shared.stats;
            s.live_messages
                .store(index.live.len() as u64, Ordering::Relaxed);
            s.segments
                .store(index.seg_live.len() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Recipient;

    pub(super) fn env(id: &str) -> Envelope {
        Envelope {
            id: id.into(),
            received_at: 0,
            mail_from: "a@example.org".into(),
            ret: None,
            env_id: None,
            smtputf8: false,
            body_8bit: false,
            tenant: None,
            origin: "inbound".into(),
            client_ip: "127.0.0.1".into(),
            helo: "client".into(),
            recipients: vec![Recipient::new("b@example.com")],
            attempts: 0,
            next_attempt: 0,
            is_report: false,
            delay_notified: false,
            high_risk: String::new(),
            held: false,
        }
    }

    #[tokio::test]
    async fn recovers_unfinished_messages_with_their_latest_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (spool, found) = Spool::open(dir.path(), None).expect("open");
            assert!(found.is_empty());
            spool.put(&env("A"), b"body A\r\n").await.expect("put A");
            spool.put(&env("B"), b"body B\r\n").await.expect("put B");
            let mut b = env("B");
            b.attempts = 3;
            spool.update(&b);
            spool.done("A");
            spool.flush().await.expect("flush");
        }
        let (spool, found) = Spool::open(dir.path(), None).expect("reopen");
        assert_eq!(found.len(), 1, "only B is unfinished");
        assert_eq!(found[0].id, "B");
        assert_eq!(found[0].attempts, 3, "the update survived");
        assert_eq!(spool.body("B").await.expect("body"), b"body B\r\n");
        assert!(matches!(
            spool.body("A").await,
            Err(SpoolError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_large_body_written_from_the_callers_buffer_reads_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let large: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let large = Arc::new(large);
        {
            let (spool, _) = Spool::open(dir.path(), None).expect("open");
            spool.put(&env("A"), b"before\r\n").await.expect("put A");
            spool
                .put_shared(&env("B"), large.clone())
                .await
                .expect("put B");
            spool
                .put_shared(&env("C"), Arc::new(b"small\r\n".to_vec()))
                .await
                .expect("put C");
            spool.put(&env("D"), b"after\r\n").await.expect("put D");
            assert_eq!(spool.body("B").await.expect("body"), *large);
        }
        // Read back after a restart: the records around it are whole too (checksums hold).
        let (spool, found) = Spool::open(dir.path(), None).expect("reopen");
        let mut ids: Vec<&str> = found.iter().map(|e| e.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["A", "B", "C", "D"]);
        assert_eq!(spool.body("B").await.expect("body"), *large);
        assert_eq!(spool.body("C").await.expect("body"), b"small\r\n");
        assert_eq!(spool.body("D").await.expect("body"), b"after\r\n");
        assert_eq!(spool.body_len("B"), Some(300_000));
    }

    #[tokio::test]
    async fn a_full_spool_refuses_and_keeps_what_it_had() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _) = Spool::open(dir.path(), Some(2_000)).expect("open");
        spool
            .put(&env("A"), &[b'x'; 500])
            .await
            .expect("first fits");
        let err = spool.put(&env("B"), &[b'x'; 4_000]).await;
        assert!(matches!(err, Err(SpoolError::Full { .. })), "{err:?}");
        drop(spool);
        let (_, found) = Spool::open(dir.path(), None).expect("reopen");
        assert_eq!(found.len(), 1);
    }

    /// What a `kill -9` leaves: the current segment as the running writer had it, records and
    /// then the zeros written ahead of them, perhaps with a record cut short over the zeros.
    #[tokio::test]
    async fn a_segment_left_by_a_killed_writer_gives_back_every_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _) = Spool::open(dir.path(), None).expect("open");
        for id in ["A", "B", "C"] {
            spool.put(&env(id), id.as_bytes()).await.expect("put");
        }
        spool.done("B");
        spool.flush().await.expect("flush");
        let current = spool
            .shared
            .segment_path(spool.shared.index.lock().expect("index").current);
        let left = fs::read(&current).expect("the segment as it is while running");
        let records = spool.stats().bytes_on_disk.load(Ordering::Relaxed) as usize;
        assert!(
            left.len() > records + room::ZERO_AHEAD as usize / 2
                && left[records..].iter().all(|&b| b == 0),
            "zeros ahead of the records: {} bytes on disk for {records} of records",
            left.len()
        );
        drop(spool);
        let (spool, found) = reopen_with_only(dir.path(), &left);
        assert_eq!(ids(&found), ["A", "C"]);
        assert_eq!(spool.body("C").await.expect("body"), b"C");
        drop(spool);

        // Cut short while writing D, over the zeros: A and C still come back, D was never
        // acknowledged.
        let mut torn = left.clone();
        let d = record::encode(Kind::Put, "D", br#"{"id":"D"}"#, b"body D");
        torn[records..records + d.len() / 2].copy_from_slice(&d[..d.len() / 2]);
        let (_, found) = reopen_with_only(dir.path(), &torn);
        assert_eq!(ids(&found), ["A", "C"]);
    }

    /// The spool in `dir` opened again with `segment` as its only segment.
    fn reopen_with_only(dir: &Path, segment: &[u8]) -> (Spool, Vec<Envelope>) {
        for entry in fs::read_dir(dir).expect("ls").flatten() {
            if entry.file_name().to_string_lossy().starts_with("segment-") {
                fs::remove_file(entry.path()).expect("rm");
            }
        }
        fs::write(segment_path(dir, 1), segment).expect("write the segment");
        Spool::open(dir, None).expect("reopen")
    }

    fn ids(found: &[Envelope]) -> Vec<&str> {
        found.iter().map(|e| e.id.as_str()).collect()
    }

    /// A closed segment keeps its records only, and the spool closed cleanly leaves no zeros.
    #[tokio::test]
    async fn zeros_ahead_are_given_back_when_a_segment_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (spool, _) = Spool::open(dir.path(), None).expect("open");
            spool.put(&env("A"), b"body A").await.expect("put");
            spool.flush().await.expect("flush");
        }
        // Opened again once the writer let go: the old segment as it was closed, a new one.
        let (_spool, found) = Spool::open(dir.path(), None).expect("reopen");
        assert_eq!(found.len(), 1);
        let on_disk: u64 = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(
            on_disk < 1_000,
            "{on_disk} bytes of segments for one small message"
        );
    }

    #[tokio::test]
    async fn disk_use_follows_the_live_queue_not_the_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _) = Spool::open(dir.path(), None).expect("open");
        // One message that stays (deferred for ever), then 3,000 that come and go.
        let mut a = env("A");
        spool.put(&a, &[b'a'; 3000]).await.expect("put A");
        for i in 0..3_000 {
            let id = format!("M{i}");
            spool.put(&env(&id), &[b'x'; 4000]).await.expect("put");
            spool.done(&id);
        }
        a.attempts = 7;
        spool.update(&a);
        spool.flush().await.expect("flush");
        let used = || spool.stats().bytes_on_disk.load(Ordering::Relaxed);
        assert!(
            spool.stats().records.load(Ordering::Relaxed) >= 6_000,
            "12 MB went through"
        );
        // Compaction runs in the background, a step a second. What may stay: the live message
        // and a current segment still under the size at which it is closed early.
        let bound = room::COMPACT_AT + 100_000;
        let mut waited = 0;
        while used() > bound && waited < 100 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            waited += 1;
        }
        assert!(used() < bound, "on disk after compaction: {}", used());
        assert_eq!(spool.body("A").await.expect("body"), vec![b'a'; 3000]);
        drop(spool);
        let (spool, found) = Spool::open(dir.path(), None).expect("reopen");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].attempts, 7, "its latest state moved with it");
        assert_eq!(spool.body("A").await.expect("body"), vec![b'a'; 3000]);
    }

    #[tokio::test]
    async fn the_size_limit_counts_live_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _) = Spool::open(dir.path(), Some(100_000)).expect("open");
        for i in 0..100 {
            let id = format!("M{i}");
            spool
                .put(&env(&id), &[b'x'; 4000])
                .await
                .expect("finished mail never fills it");
            spool.done(&id);
            spool.flush().await.expect("flush");
        }
    }

    #[tokio::test]
    async fn finished_segments_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (spool, _) = Spool::open(dir.path(), None).expect("open");
            spool.put(&env("A"), b"x").await.expect("put");
            spool.done("A");
            spool.flush().await.expect("flush");
        }
        // The reopened spool starts a new segment and drops the old, finished one.
        let (spool, found) = Spool::open(dir.path(), None).expect("reopen");
        assert!(found.is_empty());
        assert_eq!(spool.stats().segments.load(Ordering::Relaxed), 1);
        let logs = fs::read_dir(dir.path())
            .expect("ls")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("segment-"))
            })
            .count();
        assert_eq!(logs, 1);
    }

    #[tokio::test]
    async fn a_spool_in_use_is_not_opened_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _) = Spool::open(dir.path(), None).expect("open");
        let second = Spool::open(dir.path(), None);
        assert!(
            matches!(second, Err(SpoolError::InUse(_))),
            "{:?}",
            second.err()
        );
        drop(spool);
        Spool::open(dir.path(), None).expect("free again once the first is closed");
    }
}
