//! Lists of networks in the file: addresses or CIDR ranges.

use anyhow::{Result, anyhow, bail};
use ipnet::IpNet;

/// Every entry of `list` as a network; `key` names it in errors.
pub fn list(list: &Option<Vec<String>>, key: &str) -> Result<Vec<IpNet>> {
    list.iter()
        .flatten()
        .map(|s| {
            relayward_tenancy::parse_net(s)
                .ok_or_else(|| anyhow!("{key}: \"{s}\" is not an address or CIDR range"))
        })
        .collect()
}

/// `[smtp] proxy_protocol_from` and `[http] trusted_proxies` (`key`). A listed address may name
/// any client it likes (a connector's address, or a fresh one for every sign-in attempt), so a
/// range as wide as a whole network's is refused: list the balancers and proxies themselves.
pub fn balancers(entries: &Option<Vec<String>>, key: &str) -> Result<Vec<IpNet>> {
    let nets = list(entries, key)?;
    for net in &nets {
        let narrowest = match net {
            IpNet::V4(_) => 16,
            IpNet::V6(_) => 48,
        };
        if net.prefix_len() < narrowest {
            bail!(
                "{key}: \"{net}\" is wider than /{narrowest}; every address in it could claim to be any client: list the load balancers' or proxies' own addresses"
            );
        }
    }
    Ok(nets)
}
