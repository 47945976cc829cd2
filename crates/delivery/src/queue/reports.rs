//! Reports the queue writes about a message: the NDR when recipients fail, and the one delay
//! notice when it has waited long.

use relayward_dsn as dsn;
use std::sync::atomic::Ordering;

use relayward_clock::now_ms;
use relayward_spool::{Envelope, Recipient, Ret, new_message_id};
use relayward_store::{TraceEvent, TraceKind, TraceSummary};

use super::Inner;

/// How much of a large message a report reads for the header section it returns: twice the
/// relay's default header limit (`[smtp] max_header_size`; a longer section, where an operator
/// raised it, is returned cut), and more than `FULL_RETURN_LIMIT`, so the report still sees a
/// message too large to return whole.
const REPORT_HEADER_READ: usize = 2 << 20;

impl Inner {
    pub(super) async fn send_ndr(&self, env: &Envelope) -> Result<(), relayward_spool::SpoolError> {
        if !dsn::may_report(env) {
            return Ok(());
        }
        let failed = dsn::reportable(env);
        if !failed.is_empty() {
            self.send_report(env, &failed, dsn::ReportKind::Failure)
                .await?;
        }
        let relayed: Vec<&Recipient> = env
            .recipients
            .iter()
            .filter(|r| r.wants_success_notice())
            .collect();
        if !relayed.is_empty() {
            self.send_report(env, &relayed, dsn::ReportKind::Success)
                .await?;
        }
        Ok(())
    }

    /// One delay notice per message, once it has waited `delay_notice_after`, to the
    /// recipients still pending that want one. Returns whether one was sent.
    pub(super) async fn maybe_send_delay(&self, env: &Envelope, now: i64) -> bool {
        let Some(after) = self.config.delay_notice_after else {
            return false;
        };
        if env.delay_notified
            || !dsn::may_report(env)
            || now < env.received_at + after.as_secs() as i64
        {
            return false;
        }
        let waiting: Vec<&Recipient> = env
            .recipients
            .iter()
            .filter(|r| r.is_pending() && r.wants_delay_notice())
            .collect();
        if waiting.is_empty() {
            return false;
        }
        let until = env.received_at + self.config.expire_after.as_secs() as i64;
        let kind = dsn::ReportKind::Delay {
            retry_until: dsn::rfc5322_date(until),
        };
        match self.send_report(env, &waiting, kind).await {
            Ok(()) => true,
            Err(e) => {
                // Not worth holding the message for: the next round tries again.
                tracing::warn!(id = %env.id, error = %e, "cannot spool the delay notice");
                false
            }
        }
    }

    /// What a report about `env` needs of it: the whole message when it returns the whole
    /// (`RET=FULL` or none, up to `FULL_RETURN_LIMIT`), else the start of it, which holds the
    /// header section (a large message is not read whole to return its header).
    async fn report_original(&self, env: &Envelope) -> Vec<u8> {
        let size = self.spool.body_len(&env.id).unwrap_or(0);
        if env.ret != Some(Ret::Hdrs) && size <= dsn::FULL_RETURN_LIMIT {
            return self.spool.body(&env.id).await.unwrap_or_default();
        }
        self.spool
            .body_start(&env.id, REPORT_HEADER_READ)
            .await
            .unwrap_or_default()
    }

    /// Builds a report about `recipients` of `env`, spools it durably and schedules it; it is
    /// sent from the null sender and never answered by another report.
    async fn send_report(
        &self,
        env: &Envelope,
        recipients: &[&Recipient],
        kind: dsn::ReportKind,
    ) -> Result<(), relayward_spool::SpoolError> {
        let original = self.report_original(env).await;
        // With a domain written in Unicode as its A-labels: the same mailbox (RFC 5890), which
        // a next hop without SMTPUTF8 takes too when the local part is ASCII.
        let to = relayward_store::address_key(&self.router.report_to(&env.mail_from)).into_owned();
        let id = new_message_id();
        let now = now_ms() / 1000;
        let what = match kind {
            dsn::ReportKind::Failure => "NDR",
            dsn::ReportKind::Delay { .. } => "delay notice",
            dsn::ReportKind::Success => "success notice",
        };
        let body = dsn::build_ndr(&dsn::NdrInput {
            reporting_mta: &self.config.hostname,
            env,
            to: &to,
            failed: recipients,
            original: &original,
            date: dsn::rfc5322_date(now),
            arrival_date: dsn::rfc5322_date(env.received_at),
            message_id: format!("{id}@{}", self.config.hostname),
            language: &self.router.language(env.tenant.as_deref()),
            expire_hours: self.config.expire_after.as_secs() / 3600,
            kind,
        });
        let report = Envelope {
            id: id.clone(),
            received_at: now,
            mail_from: String::new(),
            ret: Some(Ret::Hdrs),
            env_id: None,
            // Only a local part that is not ASCII needs it then (RFC 6531).
            smtputf8: !to.is_ascii(),
            body_8bit: true,
            tenant: env.tenant.clone(),
            origin: "system".into(),
            client_ip: String::new(),
            helo: self.config.hostname.clone(),
            recipients: vec![Recipient::new(to)],
            attempts: 0,
            next_attempt: 0,
            is_report: true,
            delay_notified: false,
            high_risk: String::new(),
            held: false,
        };
        self.spool.put(&report, &body).await?;
        self.stats.ndrs.fetch_add(1, Ordering::Relaxed);
        self.events.event(TraceEvent {
            message_id: id.clone(),
            at: now_ms(),
            kind: TraceKind::Received,
            recipient: None,
            detail: format!("{what} for {}", env.id),
            summary: Some(TraceSummary {
                sender: String::new(),
                tenant: env.tenant.clone(),
                origin: "system".into(),
                client_ip: String::new(),
                size: body.len() as u64,
                recipients: vec![env.mail_from.clone()],
            }),
        });
        self.event(
            &env.id,
            TraceKind::NdrSent,
            Some(&env.mail_from),
            format!("{what} {id}"),
        );
        self.schedule(report);
        Ok(())
    }
}
