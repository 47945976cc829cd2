//! Integration tests: the relay as a real process, driven over real TCP by SMTP clients, with a
//! real receiving SMTP server and a local DNS server. One test binary (cheap to link).

mod accounts;
mod api;
mod auth;
mod backup;
mod balancer;
mod claims;
mod cli;
mod cluster;
mod commands;
mod console;
mod crash;
mod dane;
mod delivery;
mod domain_checks;
mod dsn;
mod faults;
mod forward;
mod guard;
mod hostile;
mod mta_sts;
mod next_hops;
mod postfix;
mod queue;
mod readme;
mod scan;
mod tls;
mod util;
mod webhooks;
