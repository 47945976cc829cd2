//! The SMTP listeners' protocol settings, from the configuration's `[smtp]` and `[limits]`.

use std::sync::Arc;

use relayward_config::Config;
use relayward_smtp::memory::DataMemory;
use relayward_smtp::{ListenerKind, ServerConfig, TlsConfig};

/// A listener of `kind`'s settings: it takes at most `max_connections` (the configured cap,
/// fitted to the open-file limit), its messages share `data_memory`, and its handshakes are
/// served `tls`.
pub(crate) fn of(
    config: &Config,
    kind: ListenerKind,
    max_connections: usize,
    data_memory: &Arc<DataMemory>,
    tls: &Arc<TlsConfig>,
) -> ServerConfig {
    let mut c = ServerConfig::new(config.hostname.clone(), kind);
    c.max_message_size = config.limits.max_message_size;
    c.max_header_size = config.max_header_size;
    c.max_recipients = config.limits.recipients_per_message;
    c.command_timeout = config.command_timeout;
    c.busy_command_timeout = config.busy_command_timeout;
    c.max_junk_commands = config.max_junk_commands;
    c.forbid_improper_pipelining = config.forbid_improper_pipelining;
    c.improper_pipelining_allowed_from = config.improper_pipelining_allowed_from.clone();
    c.greet_pause = config.greet_pause;
    c.data_timeout = config.data_timeout;
    c.data_total_timeout = config.data_total_timeout;
    c.max_errors = config.max_errors;
    c.max_connections = max_connections;
    c.max_connections_per_ip = config.max_connections_per_ip;
    c.data_memory = data_memory.clone();
    c.tls = Some(tls.clone());
    c.proxy_from = config.proxy_protocol_from.clone();
    c
}
