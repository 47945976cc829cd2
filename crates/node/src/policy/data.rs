//! End of DATA: loop and size checks, the scan (built-in and Rspamd), the guard's verdict on
//! the message, forwarding copies, and the spool write that comes before the 250.

use super::*;

impl RelayPolicy {
    /// Everything after the client's final dot, up to the reply.
    pub(super) async fn end_of_data(
        &self,
        conn: &mut ConnState,
        peer: &Peer,
        tx: Transaction,
        body: Vec<u8>,
    ) -> Reply {
        let hops = count_received(&body);
        if hops > MAX_HOPS {
            return refuse(554, "5.4.6 Too many hops: the message is looping");
        }
        let id = new_message_id();
        let scan = match self.scan(conn, peer, &tx, &body, &id).await {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        if scan.verdict.suspicious() {
            self.stats
                .scanned_suspicious
                .fetch_add(1, Ordering::Relaxed);
        }
        match scan.verdict {
            Verdict::Bulk => self.stats.scanned_bulk.fetch_add(1, Ordering::Relaxed),
            Verdict::Spam => self.stats.scanned_spam.fetch_add(1, Ordering::Relaxed),
            Verdict::Clean => 0,
        };
        if let Some(o) = &conn.origin {
            let hashes: Vec<u64> = tx
                .rcpts
                .iter()
                .map(|r| relayward_guard::signals::key_hash(&r.address))
                .collect();
            let facts = relayward_guard::MessageFacts {
                id: &id,
                recipients: tx.rcpts.len() as u32,
                external: conn.tx_external,
                suspicious: scan.verdict.suspicious(),
                recipient_hashes: &hashes,
            };
            if let Err(r) = self.guard.record(o, &facts) {
                self.stats.guard_refusals.fetch_add(1, Ordering::Relaxed);
                tracing::info!(ip = %conn.ip, tenant = %o.tenant, verdict = scan.verdict.as_str(), reply = r.text, "message refused at end of DATA by the guard");
                let reply = refuse(r.code, r.text);
                self.trace_refused(conn, peer, &tx, &id, &scan, body.len(), &reply);
                return reply;
            }
        }
        let now = relayward_clock::now_secs();
        let (tenant, origin) = attributed(conn);
        let helo = peer.helo.clone().unwrap_or_default();
        let with = match (
            peer.tls,
            matches!(conn.attribution, Attribution::User { .. }),
        ) {
            (true, true) => "ESMTPSA",
            (true, false) => "ESMTPS",
            (false, _) => "ESMTP",
        };
        let received = format!(
            "Received: from {} ([{}])\r\n\tby {} (Relayward) with {} id {};\r\n\t{}\r\n",
            sanitize(&helo),
            conn.ip,
            self.hostname,
            with,
            id,
            relayward_dsn::rfc5322_date(now)
        );
        let added = if conn.origin.is_some() {
            missing_fields(&body, &scan, &id, &self.hostname, now)
        } else {
            String::new()
        };
        // The fields go into the body's own buffer (most often within the room it has), not
        // into a copy: a large message is held once until it is spooled. Received in front;
        // the fields the message lacks at the end of its header section, where no line of the
        // client's can fold into them (a message whose first line starts with white space
        // would otherwise make it part of our Date).
        let head = received.len();
        let mut full = body;
        full.reserve_exact(head + added.len());
        if !added.is_empty() {
            let at = fields_end(&full);
            full.splice(at..at, added.bytes());
        }
        full.splice(0..0, received.bytes());
        let body = &full[head..];

        // Recipients as spooled: bounces to our SRS addresses go back to the original sender,
        // mail for our postmaster to `smtp.postmaster`.
        let rewrite = |a: &str| {
            conn.rewrites
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(a))
                .map(|(_, o)| o.clone())
        };
        let addresses: Vec<String> = tx
            .rcpts
            .iter()
            .map(|r| rewrite(&r.address).unwrap_or_else(|| r.address.clone()))
            .collect();
        let dir = self.dir();
        let incoming = forward::Incoming {
            recipients: &addresses,
            sender: &tx.mail_from,
            body,
            scan: &scan,
            id: &id,
            now_secs: now,
        };
        let mut forwards = match self.plan_forwards(conn, &dir, &incoming) {
            Ok(f) => f,
            Err(reply) => {
                tracing::info!(ip = %conn.ip, reply = %reply.text, "message refused: forwarding loop");
                self.trace_refused(conn, peer, &tx, &id, &scan, body.len(), &reply);
                return reply;
            }
        };
        forward::bound_copies(&mut forwards, full.len(), self.forwarded_bytes);
        let arc_results = if forwards.iter().any(|f| f.outcome.is_ok()) {
            Some(self.arc_results(body).await)
        } else {
            None
        };
        let full = Arc::new(full);
        // Forward-only users' own copies are not kept (unless their forward was refused).
        // (Only looked up when some user forwards only: most messages have no forwards.)
        let any_moved = forwards.iter().any(|f| !f.keep_copy);
        let moved = |a: &str| {
            any_moved
                && dir
                    .user(a)
                    .is_some_and(|u| forwards.iter().any(|f| !f.keep_copy && f.user == u.address))
        };
        let recipients: Vec<Recipient> = tx
            .rcpts
            .iter()
            .zip(&addresses)
            .filter(|(_, a)| !moved(a))
            .map(|(r, a)| {
                let mut out = recipient(r);
                out.address = a.clone();
                out
            })
            .collect();
        drop(dir);

        let env = Envelope {
            id: id.clone(),
            received_at: now,
            mail_from: tx.mail_from.clone(),
            ret: tx
                .params
                .ret_full
                .map(|f| if f { Ret::Full } else { Ret::Hdrs }),
            env_id: tx.params.env_id.clone(),
            smtputf8: tx.params.smtputf8,
            body_8bit: tx.params.body_8bit,
            tenant: tenant.clone(),
            origin: origin.clone(),
            client_ip: conn.ip_text.to_string(),
            helo,
            recipients,
            attempts: 0,
            next_attempt: 0,
            is_report: false,
            delay_notified: false,
            high_risk: if scan.verdict.suspicious() {
                format!("scan verdict {}", scan.verdict.as_str())
            } else {
                String::new()
            },
            held: false,
        };
        // Every copy is spooled before any is queued: if one cannot be, none is kept and the
        // client tries the whole message again. Copies are made one at a time, each dropped
        // once spooled unless it is small enough to hand to the queue.
        let keep_main = !env.recipients.is_empty();
        let mut spooled: Vec<String> = Vec::new();
        let mut failure = None;
        if keep_main {
            match self.spool.put_shared(&env, full.clone()).await {
                Ok(()) => spooled.push(env.id.clone()),
                Err(e) => failure = Some(e),
            }
        }
        let mut copies: Vec<forward::Copy> = Vec::with_capacity(forwards.len());
        let mut bodies_kept = 0;
        for f in &forwards {
            if failure.is_some() {
                break;
            }
            let (copy, b) = forward::copy(f, new_message_id(), &env, &full, arc_results.as_deref());
            if let Err(e) = self.spool.put(&copy, &b).await {
                failure = Some(e);
                break;
            }
            spooled.push(copy.id.clone());
            let size = b.len();
            let body = (bodies_kept + size <= forward::BODIES_KEPT).then(|| {
                bodies_kept += size;
                Arc::new(b)
            });
            copies.push(forward::Copy {
                envelope: copy,
                size,
                body,
            });
        }
        if let Some(e) = failure {
            for done in &spooled {
                self.spool.done(done);
            }
            self.stats.spool_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "message refused: cannot spool");
            return match e {
                SpoolError::Full { .. } | SpoolError::NoSpace(_) => {
                    refuse(452, "4.3.1 Insufficient system storage, try again later")
                }
                _ => refuse(452, "4.3.1 Temporary storage failure, try again later"),
            };
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let at = now * 1000;
        let event = |kind, detail: String, summary| TraceEvent {
            message_id: id.clone(),
            at,
            kind,
            recipient: None,
            detail,
            summary,
        };
        self.trace_head(
            conn,
            Head {
                id: &id,
                at,
                tenant: &tenant,
                origin: &origin,
                client_ip: &env.client_ip,
                helo: &env.helo,
                mail_from: &env.mail_from,
                recipients: env.recipients.iter().map(|r| r.address.clone()).collect(),
                size: full.len(),
                bare_line_ends: tx.bare_line_ends,
                scan: &scan,
            },
        );
        for r in &env.recipients {
            self.trace.send(TraceEvent {
                recipient: Some(r.address.clone()),
                ..event(TraceKind::Queued, String::new(), None)
            });
        }
        for (f, c) in forwards.iter().zip(copies) {
            let copy = c.envelope;
            let detail = match &f.outcome {
                Ok(srs) => format!(
                    "copy {} for {} to {} with envelope sender {srs}{}",
                    copy.id,
                    f.user,
                    f.target,
                    if f.keep_copy { "" } else { " (forward only)" }
                ),
                Err(reply) => format!(
                    "forwarding for {} to {} refused: {reply}; the user gets an NDR ({}) and keeps the message",
                    f.user, f.target, copy.id
                ),
            };
            // A forward-only user's mail left only as this copy: the user's status is
            // Expanded (a user who keeps a copy has it queued as any recipient).
            let kind = if f.outcome.is_ok() && !f.keep_copy {
                TraceKind::Expanded
            } else {
                TraceKind::Forwarded
            };
            self.trace.send(TraceEvent {
                recipient: Some(f.user.clone()),
                ..event(kind, detail, None)
            });
            self.trace.send(TraceEvent {
                message_id: copy.id.clone(),
                at,
                kind: TraceKind::Received,
                recipient: None,
                detail: format!("forwarded copy of {id} for {}", f.user),
                summary: Some(TraceSummary {
                    sender: copy.mail_from.clone(),
                    tenant: copy.tenant.clone(),
                    origin: copy.origin.clone(),
                    client_ip: copy.client_ip.clone(),
                    size: c.size as u64,
                    recipients: vec![f.target.clone()],
                }),
            });
            let (kind, detail) = match &f.outcome {
                Ok(_) => (TraceKind::Queued, String::new()),
                Err(reply) => (TraceKind::Failed, format!("relay: {reply}")),
            };
            self.trace.send(TraceEvent {
                message_id: copy.id.clone(),
                at,
                kind,
                recipient: Some(f.target.clone()),
                detail,
                summary: None,
            });
            match c.body {
                Some(b) => self.queue.enqueue_with_body(copy, b),
                None => self.queue.enqueue(copy),
            }
        }
        if keep_main {
            self.queue.enqueue_with_body(env, full);
        }
        Reply::new(250, format!("2.0.0 OK queued as {id}"))
    }

    /// A message's first trace events: received (with the summary its search finds), whom it
    /// was attributed to, and the scan's verdict with its rules.
    fn trace_head(&self, conn: &ConnState, h: Head<'_>) {
        let event = |kind, detail: String, summary| TraceEvent {
            message_id: h.id.to_string(),
            at: h.at,
            kind,
            recipient: None,
            detail,
            summary,
        };
        self.trace.send(event(
            TraceKind::Received,
            format!(
                "from [{}] helo {} size {}{}",
                conn.ip,
                sanitize(h.helo),
                h.size,
                if h.bare_line_ends > 0 {
                    format!(", {} bare line ends normalised", h.bare_line_ends)
                } else {
                    String::new()
                }
            ),
            Some(TraceSummary {
                sender: h.mail_from.to_string(),
                tenant: h.tenant.clone(),
                origin: h.origin.to_string(),
                client_ip: h.client_ip.to_string(),
                size: h.size as u64,
                recipients: h.recipients,
            }),
        ));
        self.trace.send(event(
            TraceKind::Attributed,
            format!("{} ({})", h.tenant.as_deref().unwrap_or("-"), h.origin),
            None,
        ));
        let scan = h.scan;
        let from_note = match (&scan.header_from_domain, domain_of(h.mail_from)) {
            (Some(d), e) if !h.mail_from.is_empty() && relayward_tenancy::domain_key(d) != e => {
                format!("; header From domain {d} differs from envelope sender domain {e}")
            }
            (Some(d), _) => format!("; header From domain {d}"),
            (None, _) => "; no header From address".to_string(),
        };
        let bulk_note = scan
            .bulk_recipients
            .map(|n| format!("; this content reached {n} external recipient(s) in 24 h"))
            .unwrap_or_default();
        let external_note = scan
            .external
            .as_ref()
            .map(|e| format!("; {e}"))
            .unwrap_or_default();
        self.trace.send(event(
            TraceKind::Scanned,
            format!(
                "verdict {} score {:.1} rules [{}]{from_note}{bulk_note}{external_note}",
                scan.verdict.as_str(),
                scan.score,
                scan.rules_text()
            ),
            None,
        ));
    }

    /// A message refused at its end of data is traced as well, so that an admin looking for
    /// it finds what arrived, the scan, and for each recipient the reply the client had:
    /// `FilteredAsSpam` when the scan found it spam or bulk, `Failed` otherwise.
    #[allow(clippy::too_many_arguments)]
    fn trace_refused(
        &self,
        conn: &ConnState,
        peer: &Peer,
        tx: &Transaction,
        id: &str,
        scan: &Scan,
        size: usize,
        reply: &Reply,
    ) {
        let at = relayward_clock::now_secs() * 1000;
        let (tenant, origin) = attributed(conn);
        self.trace_head(
            conn,
            Head {
                id,
                at,
                tenant: &tenant,
                origin: &origin,
                client_ip: &conn.ip_text,
                helo: peer.helo.as_deref().unwrap_or(""),
                mail_from: &tx.mail_from,
                recipients: tx.rcpts.iter().map(|r| r.address.clone()).collect(),
                size,
                bare_line_ends: tx.bare_line_ends,
                scan,
            },
        );
        let kind = if scan.verdict.suspicious() {
            TraceKind::FilteredAsSpam
        } else {
            TraceKind::Refused
        };
        for r in &tx.rcpts {
            self.trace.send(TraceEvent {
                message_id: id.to_string(),
                at,
                kind,
                recipient: Some(r.address.clone()),
                detail: format!(
                    "refused at end of data (verdict {}): {} {}",
                    scan.verdict.as_str(),
                    reply.code,
                    reply.text
                ),
                summary: None,
            });
        }
    }

    /// The built-in scan, with Rspamd's answer merged in when one is configured; `Err` is the
    /// reply when Rspamd cannot answer and the fallback is to ask the client to try later.
    async fn scan(
        &self,
        conn: &ConnState,
        peer: &Peer,
        tx: &Transaction,
        body: &[u8],
        id: &str,
    ) -> Result<Scan, Reply> {
        let mut scan = {
            let dir = self.dir();
            let accepted_by_sender =
                |d: &str| conn.origin.as_ref().is_some_and(|o| o.is_accepted(&dir, d));
            let env = ScanEnvelope {
                mail_from: &tx.mail_from,
                recipients: tx.rcpts.len() as u32,
                external_recipients: if conn.origin.is_some() {
                    conn.tx_external
                } else {
                    0
                },
                accepted: conn
                    .origin
                    .as_ref()
                    .map(|_| &accepted_by_sender as &dyn Fn(&str) -> bool),
            };
            self.scanner.scan(body, &env, now_ms())
        };
        let Some(rspamd) = &self.rspamd else {
            return Ok(scan);
        };
        let recipients: Vec<String> = tx.rcpts.iter().map(|r| r.address.clone()).collect();
        let meta = Meta {
            client_ip: &conn.ip_text,
            helo: peer.helo.as_deref().unwrap_or(""),
            mail_from: &tx.mail_from,
            recipients: &recipients,
            user: match &conn.attribution {
                Attribution::User { address, .. } => Some(address),
                _ => None,
            },
            queue_id: id,
        };
        match rspamd.check(body, &meta).await {
            Ok(a) => relayward_scan::merge(&mut scan, "rspamd", a.verdict, a.score, &a.symbols),
            Err(e) => {
                self.stats.rspamd_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, id, "Rspamd could not scan the message");
                if self.rspamd_failure == ScanFailure::Tempfail {
                    return Err(refuse(
                        451,
                        "4.7.1 The content scanner is unavailable, try again later",
                    ));
                }
                scan.external = Some(format!(
                    "rspamd unavailable ({e}); the built-in verdict stands"
                ));
            }
        }
        Ok(scan)
    }
}

/// What a message's first trace events say.
struct Head<'a> {
    id: &'a str,
    /// Unix ms.
    at: i64,
    tenant: &'a Option<String>,
    /// How the message was attributed (`attributed`).
    origin: &'a str,
    client_ip: &'a str,
    helo: &'a str,
    mail_from: &'a str,
    recipients: Vec<String>,
    size: usize,
    bare_line_ends: usize,
    scan: &'a Scan,
}

/// The tenant a message belongs to (an inbound message's is the recipients') and how it was
/// attributed, as the trace and the spool name them.
fn attributed(conn: &ConnState) -> (Option<String>, String) {
    match &conn.attribution {
        Attribution::Connector {
            tenant,
            name,
            by_cert,
            ..
        } => {
            let how = if *by_cert { "certificate" } else { "ip" };
            (
                Some(tenant.to_string()),
                format!("connector:{name} ({how})"),
            )
        }
        Attribution::User {
            tenant, address, ..
        } => (Some(tenant.to_string()), format!("user:{address}")),
        Attribution::None => (conn.inbound_tenant.clone(), "inbound".to_string()),
    }
}

/// Where a field is added to a message's header section: before the empty line that ends it;
/// at the start when the message begins with that line; at the end of a message that is all
/// header fields (at its start when its last line is not ended, as a BDAT message's may not be).
fn fields_end(msg: &[u8]) -> usize {
    if msg.starts_with(b"\r\n") {
        return 0;
    }
    let end = relayward_dsn::find_headers_end(msg);
    if msg[..end].ends_with(b"\r\n\r\n") {
        end - 2
    } else if msg.ends_with(b"\r\n") {
        msg.len()
    } else {
        0
    }
}

/// `Message-ID` and `Date` for a tenant's message that lacks them, as its own mail program would
/// have written them: devices and scripts often leave them out, RFC 5322 requires a Date, and
/// large mailbox providers refuse mail without a Message-ID. The scan has already looked for
/// both. A message that carries a DKIM or ARC signature is left as it is: a signature may
/// cover a field's absence, and an added field would break it.
pub(super) fn missing_fields(body: &[u8], scan: &Scan, id: &str, host: &str, now: i64) -> String {
    let no_id = scan.fired("MISSING_MESSAGE_ID");
    let no_date = scan.fired("MISSING_DATE");
    if !no_id && !no_date {
        return String::new();
    }
    let headers = &body[..relayward_dsn::find_headers_end(body)];
    if ["DKIM-Signature", "ARC-Seal", "ARC-Message-Signature"]
        .iter()
        .any(|f| relayward_dsn::original_header(headers, f).is_some())
    {
        return String::new();
    }
    let mut out = String::new();
    if no_id {
        out.push_str(&format!("Message-ID: <{id}@{host}>\r\n"));
    }
    if no_date {
        out.push_str(&format!("Date: {}\r\n", relayward_dsn::rfc5322_date(now)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fields_end;

    #[test]
    fn added_fields_go_before_the_empty_line_that_ends_the_header_section() {
        fn at(m: &str) -> &str {
            &m[..fields_end(m.as_bytes())]
        }
        assert_eq!(
            at("From: a\r\nTo: b\r\n\r\nbody\r\n\r\nmore\r\n"),
            "From: a\r\nTo: b\r\n"
        );
        // A first line that folds onto nothing: the fields still go after the header fields.
        assert_eq!(at(" odd\r\nFrom: a\r\n\r\nbody\r\n"), " odd\r\nFrom: a\r\n");
        // No header fields at all: in front of the empty line, not at a blank line of the body.
        assert_eq!(at("\r\nbody\r\n\r\nmore\r\n"), "");
        // All header fields, ended or not.
        assert_eq!(at("From: a\r\nTo: b\r\n"), "From: a\r\nTo: b\r\n");
        assert_eq!(at("From: a\r\nTo: b"), "");
        assert_eq!(at(""), "");
    }
}
