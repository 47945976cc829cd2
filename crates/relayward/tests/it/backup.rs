//! The store's files: readable by their owner only; `relayward backup` while the relay runs and
//! `relayward restore` while it is stopped: the tenants, DKIM keys and SRS key come back as they
//! were at the backup; what was there is moved aside, and mail in the spool stays queued.

#![allow(clippy::unwrap_used)] // a test: a missing field should panic and say where

use std::os::unix::fs::PermissionsExt;

use crate::queue::{contoso_relay, three_deferred};
use crate::util::*;

#[test]
fn a_backup_taken_while_the_relay_runs_is_restored_with_its_keys_and_the_spool_is_kept() {
    let rx = Receiver::start(false);
    let mut relay = contoso_relay(&rx, "1h");
    relay.tenant_by_cli("fabrikam", "fabrikam.example");
    let keys = relay.cli(&["dkim", "show", "fabrikam", "fabrikam.example"]);
    let data = relay.dir.path().join("data");
    let srs = std::fs::read_to_string(data.join("srs.key")).unwrap();

    let bk = relay.dir.path().join("backup");
    let bk_arg = bk.to_str().unwrap();
    let out = relay.cli(&["backup", bk_arg]);
    assert!(out.contains("2 tenant(s)"), "{out}");
    for f in ["relayward.sqlite", "srs.key", "tls/cert.pem", "tls/key.pem"] {
        let meta = std::fs::metadata(bk.join(f)).unwrap_or_else(|e| panic!("{f}: {e}\n{out}"));
        assert_eq!(
            meta.permissions().mode() & 0o077,
            0,
            "{f} is its owner's only"
        );
    }
    let (ok, why) = relay.cli_status(&["backup", bk_arg]);
    assert!(!ok && why.contains("not empty"), "{why}");
    let (ok, why) = relay.cli_status(&["restore", bk_arg]);
    assert!(!ok && why.contains("a relay is running"), "{why}");

    // After the backup: a tenant added, and mail waiting in the spool for a later try.
    relay.tenant_by_cli("litware", "litware.example");
    let ids = three_deferred(&relay);
    relay.terminate();

    // A directory that is not a backup is refused, and nothing is changed.
    let junk = relay.dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("relayward.sqlite"), b"not a database").unwrap();
    let (ok, why) = relay.cli_status(&["restore", junk.to_str().unwrap()]);
    assert!(!ok && why.contains("not a usable backup"), "{why}");
    assert!(relay.cli(&["tenant", "list"]).contains("litware"));

    // A restore that cannot finish (here: its database cannot be written where it goes) puts
    // back what it had moved aside.
    let blocker = data.join("relayward.sqlite.restoring");
    std::fs::create_dir(&blocker).unwrap();
    let (ok, why) = relay.cli_status(&["restore", bk_arg]);
    assert!(!ok && why.contains("relayward.sqlite.restoring"), "{why}");
    assert!(relay.cli(&["tenant", "list"]).contains("litware"));
    assert!(
        data.join("tls/cert.pem").is_file(),
        "the TLS files are back"
    );
    std::fs::remove_dir(&blocker).unwrap();

    let out = relay.cli(&["restore", bk_arg]);
    assert!(out.contains("what was there is in"), "{out}");
    relay.spawn();
    let tenants = relay.cli(&["tenant", "list"]);
    assert!(tenants.contains("fabrikam"), "{tenants}");
    assert!(!tenants.contains("litware"), "{tenants}");
    assert_eq!(
        relay.cli(&["dkim", "show", "fabrikam", "fabrikam.example"]),
        keys,
        "the same DKIM keys, so the published records still hold"
    );
    assert_eq!(std::fs::read_to_string(data.join("srs.key")).unwrap(), srs);
    let audit = relay.cli(&["audit"]);
    assert!(
        audit.contains("\"store.restore\"") && audit.contains(bk_arg),
        "the restored database says who restored it, and from where: {audit}"
    );
    let queue = relay.cli(&["queue", "list"]);
    for id in &ids {
        assert!(queue.contains(id.as_str()), "{id} still queued: {queue}");
    }
    // The database that was replaced is kept, with the tenant added after the backup.
    let aside = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("before-restore-")
        })
        .expect("the replaced files are kept")
        .path();
    let mut kept = std::fs::read(aside.join("relayward.sqlite")).unwrap();
    kept.extend(std::fs::read(aside.join("relayward.sqlite-wal")).unwrap_or_default());
    assert!(
        kept.windows(7).any(|w| w == b"litware"),
        "the replaced database still holds what came after the backup"
    );
}

#[test]
fn the_data_directory_and_the_keys_the_relay_makes_are_its_owners_only() {
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut relay = Relay::start("");
    let data = relay.dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "mail, DKIM keys and password hashes");
    assert_eq!(mode(&data.join("srs.key")), 0o600);
    assert_eq!(mode(&data.join("tls")), 0o700);
    assert_eq!(mode(&data.join("tls/key.pem")), 0o600);

    // A data directory someone opened to others is narrowed again at the next start.
    relay.terminate();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    relay.spawn();
    assert_eq!(mode(&data), 0o700);
}
