//! The signing threads: as many as the machine has cores, each taking the next signature to
//! make. A signature is a third of a millisecond's arithmetic or more; made on the async
//! threads it holds SMTP sessions up, and on the blocking pool (a thread per signature under
//! load) the hand-offs between a dozen threads cost more than the work. On two cores, signed
//! 1 KB mail, a connection per message, 10 and 50 sessions: 4-18% more messages a second than
//! one signature at a time on an async thread and the rest on the blocking pool (BENCHMARKS.md,
//! issue 20, session 14).
//!
//! A pool may run at a lower priority (a `nice` value above 0): its signatures then give way
//! to every other thread of the machine that wakes, the relay's SMTP sessions first (see
//! `lone_client` in `signer.rs`).
//!
//! The queue needs no bound of its own: every job is a delivery waiting for its signature, and
//! deliveries are bounded by the queue's concurrency.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

pub(super) struct SignPool {
    /// `None` when no thread could be started: jobs then go to tokio's blocking pool.
    jobs: Option<mpsc::Sender<Job>>,
}

impl SignPool {
    /// Starts `threads` signing threads named `name-<n>`, at `nice` (0: the process's own
    /// priority; above: lower); they end when the pool is dropped.
    pub(super) fn start(threads: usize, name: &str, nice: i32) -> SignPool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    if nice > 0 {
                        lower_priority(nice);
                    }
                    work(&rx)
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(error = %e, "cannot start a DKIM signing thread"),
            }
        }
        SignPool {
            jobs: (started > 0).then_some(tx),
        }
    }

    /// Runs `f` on a signing thread and waits for its result; `None` if it panicked.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let Some(jobs) = &self.jobs else {
            return tokio::task::spawn_blocking(f).await.ok();
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        jobs.send(job).ok()?;
        rx.await.ok()
    }
}

/// Lowers the calling thread's priority by `nice` from where it runs now, to 19 at most
/// (on Linux `setpriority` with a thread's id changes that thread alone). Lowering needs no
/// privilege; if it fails all the same, the thread signs at the usual priority.
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    let me = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(me)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(me), (now + nice).min(19)) {
        tracing::warn!(error = %e, nice, "cannot lower a DKIM signing thread's priority");
    }
}

/// Elsewhere `setpriority` would change the whole process: the thread keeps its priority.
#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

/// A signing thread: the next job, until the pool is gone. A job that panics loses its own
/// result (its delivery goes on unsigned, as before) and not the thread.
fn work(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(p) => p.into_inner().recv(),
        };
        let Ok(job) = job else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a DKIM signing job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_signing_threads_and_a_panic_loses_only_its_own() {
        let pool = SignPool::start(2, "dkim-signer", 0);
        let name = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .flatten();
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("dkim-signer-")),
            "{name:?}"
        );
        let lost: Option<()> = pool.run(|| panic!("a broken key")).await;
        assert!(lost.is_none());
        // Both threads still take work: more jobs than threads, all answered.
        let mut answers = Vec::new();
        for i in 0..8u32 {
            answers.push(pool.run(move || i * 2));
        }
        let mut got = Vec::new();
        for a in answers {
            got.push(a.await);
        }
        assert_eq!(got, (0..8).map(|i| Some(i * 2)).collect::<Vec<_>>());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_quiet_pool_signs_at_a_lower_priority_and_leaves_the_caller_as_it_was() {
        let before = rustix::process::getpriority_process(None).expect("own priority");
        let quiet = SignPool::start(1, "dkim-signer-bg", 5);
        let there = quiet
            .run(|| {
                let me = rustix::thread::gettid();
                rustix::process::getpriority_process(Some(me)).ok()
            })
            .await
            .flatten();
        // Raised by 5 from where the process was (at most 19, the lowest priority).
        assert_eq!(there, Some((before + 5).min(19)));
        assert_eq!(
            rustix::process::getpriority_process(None).ok(),
            Some(before),
            "the process and its other threads keep theirs"
        );
        let usual = SignPool::start(1, "dkim-signer", 0);
        let there = usual
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok())
            .await
            .flatten();
        assert_eq!(there, Some(before));
    }
}
