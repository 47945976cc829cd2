//! Waiting for changes made elsewhere: by another node (cluster mode, where the store's change
//! feed says at once), or through this node's own command line and API. The version poll stays
//! as the fallback: a notice lost while the feed reconnects is found at the next period.

use std::time::Duration;

use tokio::sync::broadcast::{Receiver, error::RecvError};

/// What a loop waits on: its period, and notices naming `what` (`directory`, `restrictions`).
pub struct ChangeWait {
    feed: Option<Receiver<String>>,
    what: &'static str,
    period: Duration,
}

impl ChangeWait {
    pub fn new(feed: Option<Receiver<String>>, what: &'static str, period: Duration) -> ChangeWait {
        ChangeWait { feed, what, period }
    }

    /// Returns after the period, or sooner when a notice about `what` comes.
    pub async fn next(&mut self) {
        let Some(feed) = self.feed.as_mut() else {
            tokio::time::sleep(self.period).await;
            return;
        };
        let deadline = tokio::time::sleep(self.period);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                notice = feed.recv() => match notice {
                    Ok(w) if w == self.what => return,
                    Ok(_) => {}
                    // Notices were dropped: one of them may have been ours.
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => {
                        self.feed = None;
                        deadline.as_mut().await;
                        return;
                    }
                },
            }
        }
    }
}
