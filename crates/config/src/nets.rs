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

/// `[smtp] proxy_protocol_from`. A listed address may name any client it likes, the ranges of
/// every connector included, so a range as wide as a whole network's is refused: list the
/// balancers themselves.
pub fn balancers(entries: &Option<Vec<String>>) -> Result<Vec<IpNet>> {
    let nets = list(entries, "smtp.proxy_protocol_from")?;
    for net in &nets {
        let narrowest = match net {
            IpNet::V4(_) => 16,
            IpNet::V6(_) => 48,
        };
        if net.prefix_len() < narrowest {
            bail!(
                "smtp.proxy_protocol_from: \"{net}\" is wider than /{narrowest}; every address in it could claim to be any client, a connector's included: list the load balancers' own addresses"
            );
        }
    }
    Ok(nets)
}
