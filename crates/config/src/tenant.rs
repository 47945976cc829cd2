//! A tenant as the file declares it, defaults applied.

use relayward_guard::Limits;

#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: String,
    pub language: String,
    pub subscription_ends: Option<String>,
    pub admins: Vec<String>,
    pub domains: Vec<DomainConfig>,
    pub connectors: Vec<ConnectorConfig>,
    pub users: Vec<UserConfig>,
    pub routes: Vec<(String, String)>,
    pub limits: Limits,
    pub forwarding: relayward_store::Forwarding,
    pub forwarding_domains: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DomainConfig {
    pub name: String,
    pub kind: relayward_store::DomainKind,
    pub verified: bool,
    pub match_subdomains: bool,
}

#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub ips: Vec<String>,
    pub cert_name: Option<String>,
    pub require_tls: bool,
    pub relay_unregistered: bool,
    pub allow_overlap: bool,
    pub allow_wide: bool,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub address: String,
    pub password: Option<String>,
    pub aliases: Vec<String>,
    pub forward_to: Option<String>,
    pub forward_only: bool,
}
