//! What README.md tells an operator about the running relay holds: every metric it names (in
//! the alerts to set up, say) is one the relay exports.

use std::collections::BTreeSet;

use crate::util::*;

/// `relayward_*` names in the README that are not metrics.
const NOT_METRICS: &[&str] = &[
    // The PostgreSQL channel the nodes of a cluster listen on.
    "relayward_changes",
];

#[test]
fn every_metric_the_readme_names_is_exported() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let named: BTreeSet<&str> = readme
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("relayward_") && !NOT_METRICS.contains(w))
        .collect();
    assert!(named.len() > 10, "{named:?}");

    // Every optional part on, so that its metrics are there: a client CA bundle.
    let dir = tempfile::tempdir().expect("dir");
    let bundle = dir.path().join("client-ca.pem");
    std::fs::write(&bundle, crate::tls::client_ca("Operators' CA").pem).expect("write");
    let relay = Relay::start(&format!("[smtp]\nclient_ca = \"{}\"\n", bundle.display()));
    let page = relay.http_get("/metrics");
    let exported: BTreeSet<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let missing: Vec<&&str> = named.iter().filter(|n| !exported.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "README.md names metrics the relay does not export: {missing:?}"
    );
}
