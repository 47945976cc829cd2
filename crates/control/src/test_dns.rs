//! A resolver answering from a table, for the unit tests of what looks at the DNS (SPF, the
//! domain check, the sending addresses' reverse DNS): names and addresses as text, a name
//! listed in `slow` answered with a timeout, and a count of the questions asked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use relayward_delivery::dns::{DnsError, DnsFuture, Resolver};

#[derive(Default)]
pub(crate) struct Table {
    pub(crate) txt: HashMap<&'static str, Vec<&'static str>>,
    pub(crate) a: HashMap<&'static str, Vec<&'static str>>,
    pub(crate) mx: HashMap<&'static str, Vec<&'static str>>,
    /// PTR names by address, written as text.
    pub(crate) ptr: HashMap<&'static str, Vec<&'static str>>,
    pub(crate) slow: Vec<&'static str>,
    pub(crate) asked: Mutex<usize>,
}

impl Table {
    fn answer<T>(&self, name: &str, t: Option<T>) -> Result<T, DnsError> {
        *self.asked.lock().expect("count") += 1;
        if self.slow.contains(&name) {
            return Err(DnsError::Temporary(format!("{name}: timed out")));
        }
        t.ok_or_else(|| DnsError::NotFound(name.to_string()))
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Resolver for Table {
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<(u16, String)>> {
        let found = self
            .mx
            .get(domain)
            .map(|hosts| hosts.iter().map(|h| (10, h.to_string())).collect());
        Box::pin(async move { self.answer(domain, found) })
    }
    fn ips<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        let found = self.a.get(host).map(|ips| {
            ips.iter()
                .map(|s| s.parse().expect("address"))
                .collect::<Vec<IpAddr>>()
        });
        Box::pin(async move { self.answer(host, found) })
    }
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
        let found = self.txt.get(name).map(|t| strings(t));
        Box::pin(async move { self.answer(name, found) })
    }
    fn ptr<'a>(&'a self, ip: IpAddr) -> DnsFuture<'a, Vec<String>> {
        let key = ip.to_string();
        let found = self.ptr.get(key.as_str()).map(|n| strings(n));
        Box::pin(async move { self.answer(&key, found) })
    }
}
