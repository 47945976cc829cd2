//! The listeners' connection caps against the process's open-file limit. Every connection is a
//! file descriptor, and so are the spool's segments, the database, outbound deliveries and DNS.
//! If the caps together could take every descriptor, clients of one listener (idle ones
//! included) could leave the spool unable to open a file and the other listeners unable to
//! accept. At start the soft limit is raised to the hard one, and caps that still do not fit
//! are lowered to fit, with a warning that says what to raise.

/// Descriptors kept for what is not a client connection, besides one per delivery slot: the
/// spool's segments, the database's files and connections, DNS, webhooks, the control socket.
const RESERVED: u64 = 256;

/// Connection caps that fit the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Each SMTP listener's (relay, submission, and implicit-TLS submission when it listens).
    pub smtp: usize,
    pub http: usize,
}

/// The caps as configured, lowered in proportion where they and `deliveries` (outbound
/// connections at once) would need more descriptors than `limit`.
pub fn fit(wanted: Caps, smtp_listeners: usize, deliveries: usize, limit: u64) -> Caps {
    let need = smtp_listeners as u64 * wanted.smtp as u64 + wanted.http as u64;
    let budget = limit.saturating_sub(RESERVED + deliveries as u64);
    if need <= budget {
        return wanted;
    }
    let scale = |n: usize| ((n as u64 * budget / need.max(1)) as usize).max(1);
    Caps {
        smtp: scale(wanted.smtp),
        http: scale(wanted.http),
    }
}

/// Raises the soft open-file limit to the hard one, fits the caps to it and says so when they
/// had to be lowered.
pub fn fit_to_limit(wanted: Caps, smtp_listeners: usize, deliveries: usize) -> Caps {
    let Some(limit) = raise_limit() else {
        return wanted;
    };
    let caps = fit(wanted, smtp_listeners, deliveries, limit);
    if caps != wanted {
        tracing::warn!(
            open_file_limit = limit,
            configured_smtp = wanted.smtp,
            configured_http = wanted.http,
            smtp = caps.smtp,
            http = caps.http,
            "the open-file limit cannot hold the configured connection caps; each SMTP listener \
             serves at most `smtp` connections and the HTTP listener `http`: raise the limit \
             (LimitNOFILE=, ulimit -n) or lower [smtp] max_connections"
        );
    }
    caps
}

#[cfg(target_os = "linux")]
fn raise_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let (Some(current), Some(maximum)) = (now.current, now.maximum) else {
        return None; // unlimited
    };
    if maximum > current {
        let raised = Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return Some(maximum);
        }
    }
    Some(current)
}

#[cfg(not(target_os = "linux"))]
fn raise_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_are_kept_and_others_shrink_in_proportion() {
        let wanted = Caps {
            smtp: 20_000,
            http: 1024,
        };
        assert_eq!(fit(wanted, 2, 512, 1_048_576), wanted);
        // 20,000 descriptors, 512 deliveries and 256 kept back leave 19,232 for 41,024 wanted.
        let fitted = fit(wanted, 2, 512, 20_000);
        assert_eq!(
            fitted,
            Caps {
                smtp: 9_375,
                http: 480
            }
        );
        assert!(2 * fitted.smtp + fitted.http <= 20_000 - 512 - 256);
        // Even a tiny limit leaves every listener one connection.
        assert_eq!(fit(wanted, 2, 512, 100), Caps { smtp: 1, http: 1 });
        // A third SMTP listener (implicit TLS) takes its share.
        let fitted = fit(wanted, 3, 512, 20_000);
        assert!(3 * fitted.smtp + fitted.http <= 20_000 - 512 - 256);
    }
}
