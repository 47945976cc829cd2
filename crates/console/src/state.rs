//! What the pages reach.

use std::sync::Arc;

/// The control plane, the resolver for domain checks, and the sign-in limits shared with the
/// API.
#[derive(Clone)]
pub struct ConsoleState {
    pub control: Arc<relayward_control::Control>,
    pub resolver: Arc<dyn relayward_delivery::dns::Resolver>,
    pub logins: Arc<relayward_control::accounts::LoginLimiter>,
    /// `http(s)://host:port` of the listener, for the setup links the pages hand out.
    pub base_url: String,
    /// The running relay's queue (the support console's queue page); `None` where no relay
    /// runs beside the pages (benchmarks).
    pub queue: Option<relayward_delivery::Queue>,
}
