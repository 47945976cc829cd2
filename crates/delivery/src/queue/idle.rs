//! Outbound connections: at most `max_concurrent_messages` open at once, in use or idle (the
//! descriptors the relay keeps for them when it sizes its listeners), and the idle ones kept,
//! by next hop, for the next message to the same place and closed when idle too long.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::Inner;
use crate::client::Client;

/// One outbound connection's place among those the relay may hold open at once; the place
/// is free again when the connection has closed.
pub(super) type Place = OwnedSemaphorePermit;

/// Idle connections by next hop (address, source, EHLO name): since when, and each place.
pub(super) type Idle = HashMap<String, Vec<(Instant, Client, Place)>>;

/// How often a delivery waiting for a place looks again for an idle connection to close.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

impl Inner {
    /// A place for one more outbound connection: a free one, else the place of the connection
    /// idle the longest, closed for it; else the first to free. `None` once delivery stops.
    pub(super) async fn connection_place(&self) -> Option<Place> {
        loop {
            if let Ok(place) = self.connections.clone().try_acquire_owned() {
                return Some(place);
            }
            if let Some((client, place)) = self.oldest_idle() {
                client.quit().await;
                return Some(place);
            }
            // Every place is a connection in use. Look again now and then: a connection put
            // back idle meanwhile keeps its place until it is closed for somebody.
            match tokio::time::timeout(LOOK_AGAIN, self.connections.clone().acquire_owned()).await {
                Ok(Ok(place)) => return Some(place),
                Ok(Err(_)) => return None,
                Err(_) => {}
            }
        }
    }

    /// Closes a connection, and frees its place once it is closed.
    pub(super) fn close(client: Client, place: Place) {
        tokio::spawn(async move {
            client.quit().await;
            drop(place);
        });
    }

    pub(super) fn take_idle(&self, key: &str) -> Option<(Client, Place)> {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(key)?;
        while let Some((since, client, place)) = list.pop() {
            if since.elapsed() < self.config.idle_connection {
                return Some((client, place));
            }
            Inner::close(client, place);
        }
        None
    }

    pub(super) fn put_idle(&self, key: String, client: Client, place: Place) {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(key).or_default();
        if list.len() < self.config.max_per_destination {
            list.push((Instant::now(), client, place));
        } else {
            Inner::close(client, place);
        }
    }

    /// The connection idle the longest, of any next hop, taken out of the idle ones.
    fn oldest_idle(&self) -> Option<(Client, Place)> {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let key = map
            .iter()
            .filter_map(|(key, list)| list.first().map(|(since, _, _)| (*since, key)))
            .min()
            .map(|(_, key)| key.clone())?;
        let list = map.get_mut(&key)?;
        let (_, client, place) = list.remove(0);
        if list.is_empty() {
            map.remove(&key);
        }
        Some((client, place))
    }

    /// Every idle connection, taken out (at shutdown).
    pub(super) fn drain_idle(&self) -> Vec<Client> {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        map.drain()
            .flat_map(|(_, v)| v.into_iter().map(|(_, c, _)| c))
            .collect()
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
        let stale: Vec<(Client, Place)> = {
            let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = Vec::new();
            for list in map.values_mut() {
                let (keep, old): (Vec<_>, Vec<_>) = list
                    .drain(..)
                    .partition(|(since, _, _)| since.elapsed() < self.config.idle_connection);
                *list = keep;
                out.extend(old.into_iter().map(|(_, c, p)| (c, p)));
            }
            map.retain(|_, l| !l.is_empty());
            out
        };
        for (client, place) in stale {
            Inner::close(client, place);
        }
        let mut d = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        d.retain(|_, s| Arc::strong_count(s) > 1);
        drop(d);
        self.forget_old_failures();
    }
}
