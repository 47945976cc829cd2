//! What a listener is and how its sessions behave: the port's kind and the protocol settings,
//! shared by the listener (`server`) and each session (`session`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Which port a listener serves: relay (port 25: connectors and inbound) or submission (port
/// 587: STARTTLS then AUTH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Relay,
    Submission,
}

impl ListenerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Relay => "relay",
            ListenerKind::Submission => "submission",
        }
    }
}

/// Protocol settings of one listener; every default is in [`ServerConfig::default`].
#[derive(Clone)]
pub struct ServerConfig {
    pub hostname: String,
    pub kind: ListenerKind,
    pub max_message_size: usize,
    /// The longest header section a message may have (everything before its first empty line):
    /// its fields are parsed one by one, so many small ones cost far more than their bytes.
    pub max_header_size: usize,
    pub max_recipients: usize,
    /// Longest command line accepted, CRLF included (RFC 5321 says at least 512).
    pub max_line: usize,
    /// Waiting for a command (RFC 5321 4.5.3.2: 5 minutes).
    pub command_timeout: Duration,
    /// Waiting for a command while the listener is busy (three quarters of its connections
    /// taken); a session already waiting longer than this when the listener gets busy is closed
    /// within this time.
    pub busy_command_timeout: Duration,
    /// NOOP, RSET, VRFY, EXPN, HELP, EHLO and HELO a session may send before each further one
    /// counts as a protocol error; a message accepted starts the count again.
    pub max_junk_commands: u32,
    /// Waiting for a block of DATA (RFC 5321 4.5.3.2: 3 minutes).
    pub data_timeout: Duration,
    /// The whole DATA phase of one message (every BDAT chunk of it, together): bytes that
    /// trickle in slowly enough to reset `data_timeout` every time still end here.
    pub data_total_timeout: Duration,
    /// Protocol errors before the session is closed.
    pub max_errors: u32,
    /// Commands a client may send on the submission port before it authenticates.
    pub max_commands_unauthenticated: u32,
    pub max_auth_failures: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// What messages being received may hold in memory together past each one's first 256 KiB
    /// (`memory.rs`); listeners given the same budget share it.
    pub data_memory: Arc<crate::memory::DataMemory>,
    pub tls: Option<Arc<TlsConfig>>,
    /// Load balancers whose connections open with a PROXY protocol header naming the client
    /// (`proxy.rs`); connections from elsewhere are taken as they come.
    pub proxy_from: Vec<ipnet::IpNet>,
    /// TLS from the first byte (RFC 8314 implicit TLS, port 465), not by STARTTLS.
    pub implicit_tls: bool,
    /// A client that sends before a reply it must wait for (the greeting, and the replies to
    /// EHLO, HELO and DATA: RFC 5321 4.3.1 and RFC 2920 3.1) is answered 554 and disconnected;
    /// what it sent ahead is never read as commands or as a message.
    pub forbid_improper_pipelining: bool,
    /// Clients spared that check (devices that cannot be fixed); text behind a DATA that is
    /// refused still ends their session.
    pub improper_pipelining_allowed_from: Vec<ipnet::IpNet>,
    /// How long the greeting waits for a client that talks first to show itself; at zero it
    /// looks once at what has arrived already.
    pub greet_pause: Duration,
}

impl ServerConfig {
    pub fn new(hostname: impl Into<String>, kind: ListenerKind) -> ServerConfig {
        ServerConfig {
            hostname: hostname.into(),
            kind,
            max_message_size: 35 * 1024 * 1024,
            max_header_size: 1024 * 1024,
            max_recipients: 500,
            max_line: 4096,
            command_timeout: Duration::from_secs(300),
            busy_command_timeout: Duration::from_secs(10),
            max_junk_commands: 100,
            data_timeout: Duration::from_secs(180),
            data_total_timeout: Duration::from_secs(600),
            max_errors: 10,
            max_commands_unauthenticated: 10,
            max_auth_failures: 3,
            max_connections: 20_000,
            max_connections_per_ip: 500,
            data_memory: crate::memory::DataMemory::new(1024 * 1024 * 1024),
            tls: None,
            proxy_from: Vec::new(),
            implicit_tls: false,
            forbid_improper_pipelining: true,
            improper_pipelining_allowed_from: Vec::new(),
            greet_pause: Duration::ZERO,
        }
    }
}

/// The TLS configuration a listener's handshakes are served. The operator's files being read
/// again (a changed client CA bundle) replace it; a connection already encrypted keeps the one
/// its handshake had.
#[derive(Debug)]
pub struct TlsConfig(RwLock<Arc<rustls::ServerConfig>>);

impl TlsConfig {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Arc<TlsConfig> {
        Arc::new(TlsConfig(RwLock::new(config)))
    }

    /// What a handshake starting now is served.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `config` to the handshakes from now on.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}
