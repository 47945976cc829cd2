//! Connections kept open after a delivery, by destination, for the next message to the same
//! place; closed when idle too long.

use std::sync::Arc;
use std::time::Instant;

use super::Inner;
use crate::client::Client;

impl Inner {
    pub(super) fn take_idle(&self, key: &str) -> Option<Client> {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(key)?;
        while let Some((since, client)) = list.pop() {
            if since.elapsed() < self.config.idle_connection {
                return Some(client);
            }
        }
        None
    }

    pub(super) fn put_idle(&self, key: String, client: Client) {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(key).or_default();
        if list.len() < self.config.max_per_destination {
            list.push((Instant::now(), client));
        }
    }

    /// Closes connections idle for too long and forgets destination slots nobody uses; gives
    /// back the memory of tables a large backlog grew once it has drained.
    pub(super) fn sweep_idle(&self) {
        {
            let mut s = self.sched.lock().unwrap_or_else(|p| p.into_inner());
            if s.waiting.capacity() > 4096 && s.waiting.len() * 4 < s.waiting.capacity() {
                s.waiting.shrink_to_fit();
                s.heap.shrink_to_fit();
            }
        }
        {
            let mut d = self.delivering.lock().unwrap_or_else(|p| p.into_inner());
            if d.capacity() > 4096 && d.len() * 4 < d.capacity() {
                d.shrink_to_fit();
            }
        }
        let stale: Vec<Client> = {
            let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = Vec::new();
            for list in map.values_mut() {
                let (keep, old): (Vec<_>, Vec<_>) = list
                    .drain(..)
                    .partition(|(since, _)| since.elapsed() < self.config.idle_connection);
                *list = keep;
                out.extend(old.into_iter().map(|(_, c)| c));
            }
            map.retain(|_, l| !l.is_empty());
            out
        };
        for c in stale {
            tokio::spawn(c.quit());
        }
        let mut d = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        d.retain(|_, s| Arc::strong_count(s) > 1);
        drop(d);
        self.forget_old_failures();
    }
}
