//! One suite, both engines: every test here runs on the embedded SQLite store and on
//! PostgreSQL (a database of its own per test, see `relayward_store::testdb`), so cluster mode
//! behaves as one node does.

use relayward_store::*;

/// Runs each named test (an `async fn(&dyn Store)`) on both engines.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = relayward_store::SqliteStore::open(&dir.path().join("db.sqlite")).expect("open");
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = relayward_store::testdb::create().await else { return };
                    let store = relayward_store::PgStore::connect(&db.url).await.expect("connect");
                    super::$name(&store).await;
                }
            )*
        }
    };
}

on_both_engines!(
    directory_changes_bump_the_version_and_are_read_back,
    provisioning_again_keeps_what_hangs_on_the_tenant_and_webhooks_queue_per_event,
    trace_is_searchable_by_recipient_and_status,
    a_trace_search_finds_an_idn_address_in_either_form,
    managed_tenants_refuse_changes_and_missing_objects_are_named,
    related_domains_are_the_parents_and_everything_below,
    connectors_touching_a_range_are_found_through_the_claim_index,
    tenants_page_by_name_and_lapsed_ones_are_found,
    restrictions_upsert_and_grow_their_version,
    records_read_back_newest_first_within_the_limit,
    tokens_belong_to_known_tenants_and_revoke_once,
    dkim_keys_change_state_together,
    accounts_and_sessions,
    attempts_are_counted_per_key_over_a_window,
    queue_orders_are_read_in_order_after_an_id_and_dropped_after_a_day,
    queue_reads_are_answered_per_node_and_dropped_with_their_answers,
    nodes_seen_say_how_long_ago_each_was_noted,
    bulk_bands_are_kept_per_node_and_band,
    delayed_counts_are_replaced_per_node_and_read_while_fresh,
    mta_sts_policies_are_kept_until_their_age_runs_out,
    trace_prunes_in_batches_and_counts_per_day,
);

fn relayward_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Webhook `w1` of a tenant, for its alerts.
fn webhook(tenant: &str) -> Webhook {
    Webhook {
        id: "w1".into(),
        tenant: tenant.into(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: "s".into(),
        events: vec!["alert".into()],
        created_by: "test".into(),
        created_at: 1,
    }
}

fn domain(tenant: &str, name: &str) -> Domain {
    Domain {
        tenant: tenant.into(),
        name: name.into(),
        kind: DomainKind::Authoritative,
        match_subdomains: false,
        verified: true,
        verification_token: "t".into(),
    }
}

fn user(tenant: &str, address: &str) -> User {
    User {
        tenant: tenant.into(),
        address: address.into(),
        aliases: vec![],
        password_hash: None,
        forward_to: None,
        forward_only: false,
    }
}

fn connector(tenant: &str, name: &str) -> Connector {
    Connector {
        tenant: tenant.into(),
        name: name.into(),
        ips: vec!["192.0.2.0/28".into()],
        cert_name: None,
        require_tls: false,
        relay_unregistered: false,
        created_by: "test".into(),
        created_at: 5,
        reviewed: false,
    }
}

async fn directory_changes_bump_the_version_and_are_read_back(store: &dyn Store) {
    let v0 = store.directory_version().await.expect("version");
    store
        .add_tenant(&Tenant::named("contoso"))
        .await
        .expect("tenant");
    store
        .add_domain(&domain("contoso", "Contoso.Example"))
        .await
        .expect("domain");
    assert!(store.directory_version().await.expect("version") > v0);
    let d = store.directory().await.expect("directory");
    assert_eq!(d.domains[0].name, "contoso.example");
    let err = store.add_tenant(&Tenant::named("contoso")).await;
    assert!(matches!(err, Err(StoreError::Exists { .. })), "{err:?}");
    // A name that differs only in letter case is the same name, and the error names the one
    // that exists.
    let err = store.add_tenant(&Tenant::named("Contoso")).await;
    assert!(
        matches!(&err, Err(StoreError::Exists { what: "tenant", name }) if name == "contoso"),
        "{err:?}"
    );
    let err = store
        .add_route(&Route {
            tenant: "nobody".into(),
            domain: "x.example".into(),
            host: "127.0.0.1:25".into(),
        })
        .await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    // A domain another tenant holds is refused, whatever its letter case.
    store
        .add_tenant(&Tenant::named("fabrikam"))
        .await
        .expect("tenant");
    let err = store
        .add_domain(&domain("fabrikam", "CONTOSO.example"))
        .await;
    assert!(matches!(err, Err(StoreError::Exists { .. })), "{err:?}");
    // Users, connectors and routes come back with every field.
    let mut u = user("contoso", "Ann@Contoso.Example");
    u.aliases = vec!["sales@contoso.example".into()];
    u.password_hash = Some("$argon2id$x".into());
    u.forward_to = Some("ann@elsewhere.example".into());
    u.forward_only = true;
    store.add_user(&u).await.expect("user");
    let mut k = connector("contoso", "on-prem");
    k.cert_name = Some("mail.contoso.example".into());
    k.require_tls = true;
    k.relay_unregistered = true;
    store.add_connector(&k).await.expect("connector");
    store
        .add_route(&Route {
            tenant: "contoso".into(),
            domain: "Contoso.Example".into(),
            host: "127.0.0.1:2525".into(),
        })
        .await
        .expect("route");
    let d = store
        .tenant_data("contoso")
        .await
        .expect("read")
        .expect("tenant");
    assert_eq!(d.users.len(), 1);
    assert_eq!(d.users[0].address, "ann@contoso.example");
    assert_eq!(d.users[0].aliases, u.aliases);
    assert_eq!(
        (d.users[0].forward_to.as_deref(), d.users[0].forward_only),
        (Some("ann@elsewhere.example"), true)
    );
    assert_eq!(d.connectors, vec![k.clone()]);
    assert_eq!(d.routes[0].domain, "contoso.example");
    assert!(store.tenant_data("nobody").await.expect("read").is_none());
    // Changes to them grow the version too, and missing ones are named.
    let v1 = store.directory_version().await.expect("version");
    store
        .set_connector_reviewed("contoso", "on-prem", true)
        .await
        .expect("review");
    store
        .set_domain_verified("contoso", "contoso.example", false)
        .await
        .expect("unverify");
    assert!(store.directory_version().await.expect("version") >= v1 + 2);
    let all = store.all_connectors().await.expect("connectors");
    assert!(all[0].reviewed);
    assert!(
        !store
            .domain("Contoso.Example.")
            .await
            .expect("domain")
            .verified
    );
    let err = store.set_connector_reviewed("contoso", "nope", true).await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    u.aliases.clear();
    store.update_user(&u).await.expect("update user");
    store
        .delete_connector("contoso", "on-prem")
        .await
        .expect("delete");
    let err = store.delete_connector("contoso", "on-prem").await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    store
        .delete_user("contoso", "ANN@contoso.example")
        .await
        .expect("delete user");
    let err = store.update_user(&u).await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    let d = store.directory().await.expect("directory");
    assert!(d.users.is_empty() && d.connectors.is_empty());
    // Forwarding controls and limit overrides.
    store
        .set_forwarding("contoso", Forwarding::Listed, &["partner.example".into()])
        .await
        .expect("forwarding");
    let t = store
        .tenant("contoso")
        .await
        .expect("read")
        .expect("tenant");
    assert_eq!(t.forwarding, Forwarding::Listed);
    assert_eq!(t.forwarding_domains, vec!["partner.example".to_string()]);
    store
        .set_tenant_limits("contoso", r#"{"recipients_per_day":10}"#)
        .await
        .expect("limits");
    assert_eq!(
        store.tenant_limits().await.expect("limits"),
        vec![("contoso".into(), r#"{"recipients_per_day":10}"#.into())]
    );
}

async fn provisioning_again_keeps_what_hangs_on_the_tenant_and_webhooks_queue_per_event(
    store: &dyn Store,
) {
    let mut t = Tenant::named("contoso");
    t.managed_by_config = true;
    let data = TenantData {
        tenant: Some(t.clone()),
        domains: vec![domain("contoso", "contoso.example")],
        users: vec![user("contoso", "ann@contoso.example")],
        ..Default::default()
    };
    store.provision(&data).await.expect("provision");
    store
        .add_webhook(&webhook("contoso"))
        .await
        .expect("webhook");
    // A restart provisions the configuration's tenants again (with a new language here, and
    // without the user).
    t.language = "es".into();
    store
        .provision(&TenantData {
            tenant: Some(t),
            domains: vec![domain("contoso", "contoso.example")],
            ..Default::default()
        })
        .await
        .expect("provision again");
    assert_eq!(
        store
            .tenant("contoso")
            .await
            .expect("read")
            .map(|t| t.language),
        Some("es".into())
    );
    let d = store
        .tenant_data("contoso")
        .await
        .expect("read")
        .expect("tenant");
    assert!(d.users.is_empty());
    assert_eq!(d.domains.len(), 1);
    assert_eq!(
        store.webhooks(Some("contoso")).await.expect("hooks").len(),
        1
    );
    // A tenant made through the API is not taken over by the configuration.
    store
        .add_tenant(&Tenant::named("fabrikam"))
        .await
        .expect("tenant");
    let mut f = Tenant::named("fabrikam");
    f.managed_by_config = true;
    let err = store
        .provision(&TenantData {
            tenant: Some(f),
            ..Default::default()
        })
        .await;
    assert!(matches!(err, Err(StoreError::Exists { .. })), "{err:?}");
    // Only the events a webhook takes are queued for it.
    assert_eq!(
        store
            .queue_webhook_event("contoso", "restriction", "{}", 10)
            .await
            .expect("queue"),
        0
    );
    assert_eq!(
        store
            .queue_webhook_event("contoso", "alert", "{}", 10)
            .await
            .expect("queue"),
        1
    );
    let claim = |now| store.claim_webhook_deliveries(now, 1000, 10);
    assert!(claim(9).await.expect("claim").is_empty());
    let due = claim(10).await.expect("claim");
    assert_eq!(due.len(), 1);
    // Claimed: no one else takes it until the lease ends, then it is due again.
    assert!(claim(10).await.expect("claim").is_empty());
    assert_eq!(claim(1010).await.expect("claim").len(), 1);
    let mut d = due[0].clone();
    d.state = "delivered".into();
    d.attempts = 1;
    d.last_status = Some(204);
    store.update_webhook_delivery(&d).await.expect("update");
    assert!(claim(99_999).await.expect("claim").is_empty());
    let log = store.webhook_deliveries("w1", 10).await.expect("log");
    assert_eq!(
        (log[0].state.as_str(), log[0].attempts, log[0].last_status),
        ("delivered", 1, Some(204))
    );
    // A redelivery queued by hand keeps its fields.
    store
        .add_webhook_delivery(&WebhookDelivery {
            id: 0,
            webhook_id: "w1".into(),
            event: "test".into(),
            body: "{\"x\":1}".into(),
            attempts: 0,
            state: "pending".into(),
            last_status: None,
            last_error: None,
            next_attempt: 20,
            created_at: 20,
            updated_at: 20,
        })
        .await
        .expect("add delivery");
    let log = store.webhook_deliveries("w1", 10).await.expect("log");
    assert_eq!((log.len(), log[0].event.as_str()), (2, "test"));
    store.delete_webhook("w1").await.expect("delete");
    let err = store.delete_webhook("w1").await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    assert!(
        store
            .webhook_deliveries("w1", 10)
            .await
            .expect("log")
            .is_empty()
    );
}

fn trace_event(kind: TraceKind, rcpt: Option<&str>, summary: Option<TraceSummary>) -> TraceEvent {
    TraceEvent {
        message_id: "M1".into(),
        at: 1,
        kind,
        recipient: rcpt.map(str::to_string),
        detail: String::new(),
        summary,
    }
}

/// The trace keeps addresses as the client wrote them, an IDN in Unicode from an SMTPUTF8
/// client; an operator who searches for the A-labels (or the other way round) finds it.
async fn a_trace_search_finds_an_idn_address_in_either_form(store: &dyn Store) {
    let received = |id: &str, sender: &str, rcpt: &str| TraceEvent {
        message_id: id.into(),
        summary: Some(TraceSummary {
            sender: sender.into(),
            tenant: Some("contoso".into()),
            origin: "connector:on-prem".into(),
            client_ip: "127.0.0.1".into(),
            size: 10,
            recipients: vec![rcpt.into()],
        }),
        ..trace_event(TraceKind::Received, None, None)
    };
    store
        .record_trace(
            vec![
                received("U", "anna@b\u{fc}cher.example", "bob@m\u{fc}ller.example"),
                received(
                    "A",
                    "anna@xn--bcher-kva.example",
                    "bob@xn--mller-kva.example",
                ),
                received("O", "anna@other.example", "bob@other.example"),
            ]
            .into(),
        )
        .await
        .expect("record");
    for (sender, recipient) in [
        (Some("Anna@B\u{fc}cher.example"), None),
        (Some("anna@xn--bcher-kva.example"), None),
        (None, Some("bob@M\u{fc}ller.example")),
        (None, Some("BOB@XN--MLLER-KVA.EXAMPLE")),
    ] {
        let q = TraceQuery {
            sender: sender.map(str::to_string),
            recipient: recipient.map(str::to_string),
            ..Default::default()
        };
        let mut ids: Vec<String> = store
            .search_trace(&q)
            .await
            .expect("search")
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["A", "U"], "{q:?}");
    }
}

async fn trace_is_searchable_by_recipient_and_status(store: &dyn Store) {
    store
        .record_trace(
            vec![
                trace_event(
                    TraceKind::Received,
                    None,
                    Some(TraceSummary {
                        sender: "a@contoso.example".into(),
                        tenant: Some("contoso".into()),
                        origin: "connector:on-prem".into(),
                        client_ip: "127.0.0.1".into(),
                        size: 10,
                        recipients: vec!["b@x.example".into(), "c@y.example".into()],
                    }),
                ),
                trace_event(TraceKind::Delivered, Some("b@x.example"), None),
                trace_event(TraceKind::Failed, Some("c@y.example"), None),
            ]
            .into(),
        )
        .await
        .expect("record");
    let q = TraceQuery {
        recipient: Some("C@Y.example".into()),
        ..Default::default()
    };
    let found = store.search_trace(&q).await.expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].events.len(), 3);
    assert_eq!(found[0].events[0].kind, "received");
    assert_eq!(found[0].size, 10);
    let q = TraceQuery {
        status: Some("Failed".into()),
        ..Default::default()
    };
    let found = store.search_trace(&q).await.expect("search");
    let failed: Vec<_> = found[0]
        .recipients
        .iter()
        .filter(|r| r.status == "Failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].address, "c@y.example");
    // A later batch changes a status the earlier one left; one that repeats it changes nothing.
    for (kind, status) in [
        (TraceKind::Deferred, "Deferred"),
        (TraceKind::Deferred, "Deferred"),
        (TraceKind::Delivered, "Delivered"),
    ] {
        store
            .record_trace(vec![trace_event(kind, Some("B@x.example"), None)].into())
            .await
            .expect("record");
        let q = TraceQuery {
            message_id: Some("M1".into()),
            ..Default::default()
        };
        let found = store.search_trace(&q).await.expect("search");
        let b: Vec<&str> = found[0]
            .recipients
            .iter()
            .filter(|r| r.address == "b@x.example")
            .map(|r| r.status.as_str())
            .collect();
        assert_eq!(b, [status]);
    }
    for q in [
        TraceQuery {
            sender: Some("A@contoso.example".into()),
            tenant: Some("contoso".into()),
            since: Some(1),
            until: Some(1),
            ..Default::default()
        },
        TraceQuery {
            message_id: Some("M1".into()),
            ..Default::default()
        },
    ] {
        assert_eq!(
            store.search_trace(&q).await.expect("search").len(),
            1,
            "{q:?}"
        );
    }
    for q in [
        TraceQuery {
            sender: Some("nobody@else.example".into()),
            ..Default::default()
        },
        TraceQuery {
            since: Some(2),
            ..Default::default()
        },
    ] {
        assert!(
            store.search_trace(&q).await.expect("search").is_empty(),
            "{q:?}"
        );
    }
    // A later message with one recipient, delivered: by status the newest come first, and a
    // recipient's status is that recipient's, not another's of the same message.
    let m2 = |kind, rcpt: Option<&str>, summary| TraceEvent {
        message_id: "M2".into(),
        at: 5,
        ..trace_event(kind, rcpt, summary)
    };
    store
        .record_trace(
            vec![
                m2(
                    TraceKind::Received,
                    None,
                    Some(TraceSummary {
                        sender: "e@contoso.example".into(),
                        tenant: Some("contoso".into()),
                        origin: "connector:on-prem".into(),
                        client_ip: "127.0.0.1".into(),
                        size: 20,
                        recipients: vec!["d@z.example".into()],
                    }),
                ),
                m2(TraceKind::Delivered, Some("d@z.example"), None),
            ]
            .into(),
        )
        .await
        .expect("record");
    let ids = |q: TraceQuery| async move {
        store
            .search_trace(&q)
            .await
            .expect("search")
            .into_iter()
            .map(|m| m.message_id)
            .collect::<Vec<_>>()
    };
    let by = |recipient: Option<&str>, status: Option<&str>, limit| TraceQuery {
        recipient: recipient.map(str::to_string),
        status: status.map(str::to_string),
        limit,
        ..Default::default()
    };
    assert_eq!(ids(by(None, Some("Delivered"), 0)).await, ["M2", "M1"]);
    assert_eq!(ids(by(None, Some("Delivered"), 1)).await, ["M2"]);
    assert_eq!(ids(by(None, Some("Failed"), 0)).await, ["M1"]);
    assert!(ids(by(None, Some("Deferred"), 0)).await.is_empty());
    assert_eq!(
        ids(by(Some("C@y.example"), Some("Failed"), 0)).await,
        ["M1"]
    );
    assert!(
        ids(by(Some("c@y.example"), Some("Delivered"), 0))
            .await
            .is_empty()
    );
    assert_eq!(ids(by(None, None, 0)).await, ["M2", "M1"]);
    // A status within a tenant's messages or a time window.
    let within = |tenant: Option<&str>, since, status: &str| TraceQuery {
        tenant: tenant.map(str::to_string),
        since,
        status: Some(status.into()),
        ..Default::default()
    };
    assert_eq!(ids(within(Some("contoso"), None, "Failed")).await, ["M1"]);
    assert!(
        ids(within(Some("fabrikam"), None, "Failed"))
            .await
            .is_empty()
    );
    assert_eq!(ids(within(None, Some(1), "Failed")).await, ["M1"]);
    assert!(ids(within(None, Some(2), "Failed")).await.is_empty());
    assert_eq!(ids(within(None, Some(2), "Delivered")).await, ["M2"]);
}

async fn managed_tenants_refuse_changes_and_missing_objects_are_named(store: &dyn Store) {
    let mut t = Tenant::named("contoso");
    t.managed_by_config = true;
    store
        .provision(&TenantData {
            tenant: Some(t.clone()),
            ..Default::default()
        })
        .await
        .expect("provision");
    let v = store.directory_version().await.expect("version");
    for err in [
        store
            .add_domain(&domain("contoso", "contoso.example"))
            .await,
        store.add_user(&user("contoso", "a@contoso.example")).await,
        store.add_connector(&connector("contoso", "c")).await,
        store.update_tenant(&t).await,
        store.set_tenant_limits("contoso", "{}").await,
        store.set_forwarding("contoso", Forwarding::Off, &[]).await,
    ] {
        assert!(
            matches!(err, Err(StoreError::ManagedByConfig(_))),
            "{err:?}"
        );
    }
    assert_eq!(store.directory_version().await.expect("version"), v);
    let err = store.add_user(&user("nobody", "a@nobody.example")).await;
    assert!(
        matches!(&err, Err(StoreError::NotFound { what: "tenant", name }) if name == "nobody"),
        "{err:?}"
    );
    let err = store.domain("none.example").await;
    assert!(
        matches!(err, Err(StoreError::NotFound { what: "domain", .. })),
        "{err:?}"
    );
    let err = store.restriction("R404").await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    let err = store.provision(&TenantData::default()).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
}

/// The names of the domains `related_domains` answers for `name`.
async fn related_names(store: &dyn Store, name: &str) -> Vec<String> {
    store
        .related_domains(name)
        .await
        .expect("related")
        .into_iter()
        .map(|d| d.name)
        .collect()
}

async fn related_domains_are_the_parents_and_everything_below(store: &dyn Store) {
    store.add_tenant(&Tenant::named("a")).await.expect("tenant");
    for name in [
        "example.com",
        "mail.example.com",
        "x.mail.example.com",
        "notexample.com",
        "my-example.com",
        "other.org",
    ] {
        store.add_domain(&domain("a", name)).await.expect("domain");
    }
    let mut names: Vec<String> = related_names(store, "Mail.Example.com.").await;
    names.sort();
    assert_eq!(
        names,
        ["example.com", "mail.example.com", "x.mail.example.com"]
    );
    let names: Vec<String> = related_names(store, "example.com").await;
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(!names.contains(&"notexample.com".to_string()));
    assert!(!names.contains(&"my-example.com".to_string()));
}

fn connector_on(tenant: &str, name: &str, ips: &[&str]) -> Connector {
    Connector {
        ips: ips.iter().map(|s| s.to_string()).collect(),
        ..connector(tenant, name)
    }
}

/// The connectors (tenant/name, sorted) whose ranges touch any of `ranges`.
async fn touching(store: &dyn Store, ranges: &[&str]) -> Vec<String> {
    let spans: Vec<Span> = ranges
        .iter()
        .map(|r| Span::parse(r).expect("range"))
        .collect();
    store
        .connectors_touching(&spans)
        .await
        .expect("claims")
        .into_iter()
        .map(|k| format!("{}/{}", k.tenant, k.name))
        .collect()
}

async fn connectors_touching_a_range_are_found_through_the_claim_index(store: &dyn Store) {
    store.add_tenant(&Tenant::named("a")).await.expect("tenant");
    store.add_tenant(&Tenant::named("b")).await.expect("tenant");
    for k in [
        connector_on("a", "k1", &["10.1.2.0/24", "2001:db8::5", "not a range"]),
        connector_on("a", "k2", &["10.0.0.0/8"]),
        connector_on("b", "k3", &["192.0.2.7", "::ffff:198.51.100.0/120"]),
        connector_on("b", "k4", &["10.1.2.128/25"]),
    ] {
        store.add_connector(&k).await.expect("connector");
    }
    // Ranges that contain the one asked about, however wide.
    assert_eq!(
        touching(store, &["10.1.2.200"]).await,
        ["a/k1", "a/k2", "b/k4"]
    );
    // Ranges inside it, and the one around it.
    assert_eq!(
        touching(store, &["10.1.0.0/16"]).await,
        ["a/k1", "a/k2", "b/k4"]
    );
    assert_eq!(touching(store, &["10.1.2.0/25"]).await, ["a/k1", "a/k2"]);
    // An IPv4 range and its IPv4-mapped spelling are one claim, both ways.
    assert_eq!(touching(store, &["198.51.100.9"]).await, ["b/k3"]);
    assert_eq!(touching(store, &["::ffff:192.0.2.0/120"]).await, ["b/k3"]);
    assert_eq!(touching(store, &["2001:db8::/32"]).await, ["a/k1"]);
    assert!(
        touching(store, &["172.16.0.1", "2001:db9::1"])
            .await
            .is_empty()
    );
    assert_eq!(
        touching(store, &["172.16.0.1", "192.0.2.0/28", "10.200.0.1"]).await,
        ["a/k2", "b/k3"]
    );
    // A deleted connector's ranges go with it.
    store.delete_connector("a", "k2").await.expect("delete");
    assert_eq!(touching(store, &["10.1.2.200"]).await, ["a/k1", "b/k4"]);
    // A configuration-managed tenant provisioned again claims only its new ranges.
    let mut t = Tenant::named("c");
    t.managed_by_config = true;
    for ips in [["203.0.113.0/24"], ["203.0.114.0/24"]] {
        store
            .provision(&TenantData {
                tenant: Some(t.clone()),
                connectors: vec![connector_on("c", "gw", &ips)],
                ..Default::default()
            })
            .await
            .expect("provision");
    }
    assert!(touching(store, &["203.0.113.1"]).await.is_empty());
    assert_eq!(touching(store, &["203.0.114.1"]).await, ["c/gw"]);
}

async fn tenants_page_by_name_and_lapsed_ones_are_found(store: &dyn Store) {
    for (name, ends) in [
        ("c", Some("2026-01-01")),
        ("a", None),
        ("b", Some("2027-01-01")),
        ("d", Some("2025-06-30")),
    ] {
        let mut t = Tenant::named(name);
        t.subscription_ends = ends.map(str::to_string);
        t.admins = vec![format!("admin@{name}.example")];
        store.add_tenant(&t).await.expect("tenant");
    }
    let page: Vec<String> = store
        .tenants(None, 2)
        .await
        .expect("page")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(page, ["a", "b"]);
    let page = store.tenants(Some("b"), 10).await.expect("page");
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].admins, vec!["admin@c.example".to_string()]);
    let lapsed: Vec<String> = store
        .lapsed_tenants("2026-11-30", None, 10)
        .await
        .expect("lapsed")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(lapsed, ["c", "d"]);
    let lapsed = store
        .lapsed_tenants("2026-11-30", Some("c"), 10)
        .await
        .expect("lapsed");
    assert_eq!(lapsed.len(), 1);
}

fn restriction(id: &str, tenant: &str, started_at: i64, state: &str) -> RestrictionRow {
    RestrictionRow {
        id: id.into(),
        tenant: tenant.into(),
        kind: "tenant".into(),
        name: "tenant_threshold".into(),
        state: state.into(),
        started_at,
        updated_at: started_at,
        body: "{}".into(),
    }
}

async fn restrictions_upsert_and_grow_their_version(store: &dyn Store) {
    let v0 = store.restrictions_version().await.expect("version");
    let save = |r: RestrictionRow| async move { store.save_restriction(&r).await.expect("save") };
    assert!(save(restriction("R1", "contoso", 10, "active")).await);
    // A second restriction of the same subject while the first is open (two nodes starting
    // one at once): not stored.
    assert!(!save(restriction("R2", "contoso", 20, "active")).await);
    assert!(save(restriction("R3", "fabrikam", 30, "active")).await);
    let mut lifted = restriction("R1", "contoso", 10, "lifted");
    lifted.updated_at = 40;
    lifted.body = "{\"released_by\":\"op\"}".into();
    assert!(save(lifted.clone()).await);
    // Once the first is lifted, a new one starts.
    assert!(save(restriction("R2", "contoso", 20, "active")).await);
    assert_eq!(store.restrictions_version().await.expect("version"), v0 + 4);
    let r1 = store.restriction("R1").await.expect("read");
    assert_eq!(
        (r1.state.as_str(), r1.updated_at, r1.started_at),
        ("lifted", 40, 10)
    );
    assert_eq!(r1.body, lifted.body);
    let open: Vec<String> = store
        .restrictions(Some("contoso"), true)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(open, ["R2"]);
    let all: Vec<String> = store
        .restrictions(None, false)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, ["R3", "R2", "R1"]);
    // Dismissed domains and attestations are kept once, the latest word winning.
    store
        .dismiss_domain("contoso", "Spam.Example", "ann", 1)
        .await
        .expect("dismiss");
    store
        .dismiss_domain("contoso", "spam.example", "bob", 2)
        .await
        .expect("dismiss");
    assert_eq!(
        store.dismissed_domains("contoso").await.expect("dismissed"),
        vec!["spam.example".to_string()]
    );
    assert!(store.attestation("R2").await.expect("read").is_none());
    store.attest("R2", "ann", 5).await.expect("attest");
    store.attest("R2", "bob", 6).await.expect("attest");
    assert_eq!(
        store.attestation("R2").await.expect("read"),
        Some(("bob".into(), 6))
    );
}

async fn records_read_back_newest_first_within_the_limit(store: &dyn Store) {
    let alert = |tenant: &str, at| AlertRow {
        id: 0,
        tenant: tenant.into(),
        at,
        severity: "high".into(),
        kind: "restriction".into(),
        subject: format!("s{at}"),
        text: "t".into(),
    };
    store
        .add_alerts(vec![
            alert("contoso", 1),
            alert("contoso", 3),
            alert("fabrikam", 2),
        ])
        .await
        .expect("alerts");
    let got: Vec<i64> = store
        .alerts(None, 2)
        .await
        .expect("alerts")
        .iter()
        .map(|a| a.at)
        .collect();
    assert_eq!(got, [3, 2]);
    assert_eq!(
        store
            .alerts(Some("contoso"), 10)
            .await
            .expect("alerts")
            .len(),
        2
    );
    for (at, tenant) in [(1, Some("contoso")), (2, None), (3, Some("contoso"))] {
        store
            .audit(&AuditEntry {
                at,
                actor: "ann".into(),
                role: "admin".into(),
                tenant: tenant.map(str::to_string),
                action: format!("a{at}"),
                client: "127.0.0.1".into(),
                mfa: at == 3,
                detail: String::new(),
            })
            .await
            .expect("audit");
    }
    let log = store.audit_log(Some("contoso"), 10).await.expect("log");
    assert_eq!(
        log.iter()
            .map(|e| (e.action.as_str(), e.mfa))
            .collect::<Vec<_>>(),
        [("a3", true), ("a1", false)]
    );
    assert_eq!(store.audit_log(None, 10).await.expect("log").len(), 3);
    // The guard's counters: one body per node and tenant, replaced (a save repeated after a
    // failure counts nothing twice).
    let before = store.counters_since(0).await.expect("counters");
    assert!(before.is_empty());
    let now = relayward_clock_ms();
    store
        .save_counters("a", vec![("contoso".into(), "{\"n\":1}".into())], now)
        .await
        .expect("counters");
    for _ in 0..2 {
        store
            .save_counters(
                "a",
                vec![
                    ("contoso".into(), "{\"n\":2}".into()),
                    ("fabrikam".into(), "{}".into()),
                ],
                now,
            )
            .await
            .expect("counters");
    }
    store
        .save_counters("b", vec![("contoso".into(), "{\"n\":7}".into())], now)
        .await
        .expect("counters");
    let contoso: Vec<(String, String)> = store
        .counters(Some("contoso"))
        .await
        .expect("counters")
        .into_iter()
        .map(|r| (r.node, r.body))
        .collect();
    assert_eq!(
        contoso,
        [
            ("a".into(), "{\"n\":2}".into()),
            ("b".into(), "{\"n\":7}".into())
        ]
    );
    assert_eq!(store.counters(None).await.expect("counters").len(), 3);
    // Saved "now" by the store's clock (the PostgreSQL server's in a cluster).
    let recent = store.counters_since(now - 60_000).await.expect("counters");
    assert_eq!(recent.len(), 3, "{recent:?}");
    assert!(
        recent.iter().all(|r| (r.updated_at - now).abs() < 60_000),
        "{recent:?}"
    );
    assert!(
        store
            .counters_since(now + 3_600_000)
            .await
            .expect("counters")
            .is_empty()
    );
    // SMTP AUTH lockouts: one row per account, renewed.
    let lockout = |until| AuthLockout {
        account: "ann@contoso.example".into(),
        tenant: "contoso".into(),
        at: until - 10,
        until,
        failures: 5,
        client: "192.0.2.1".into(),
    };
    store
        .record_auth_lockout(&lockout(100))
        .await
        .expect("lockout");
    store
        .record_auth_lockout(&lockout(200))
        .await
        .expect("lockout");
    let got = store.auth_lockouts("contoso", 150).await.expect("lockouts");
    assert_eq!(got, vec![lockout(200)]);
    assert!(
        store
            .auth_lockouts("contoso", 201)
            .await
            .expect("lockouts")
            .is_empty()
    );
}

async fn tokens_belong_to_known_tenants_and_revoke_once(store: &dyn Store) {
    let token = |id: &str, tenant: Option<&str>, at| ApiToken {
        id: id.into(),
        name: format!("token {id}"),
        role: if tenant.is_some() {
            "admin"
        } else {
            "operator"
        }
        .into(),
        tenant: tenant.map(str::to_string),
        secret_hash: "h".into(),
        created_at: at,
        expires_at: Some(at + 1000),
        last_used_at: None,
        revoked_at: None,
    };
    let err = store.add_token(&token("t0", Some("nobody"), 1)).await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    store
        .add_tenant(&Tenant::named("contoso"))
        .await
        .expect("tenant");
    store
        .add_token(&token("t1", Some("contoso"), 1))
        .await
        .expect("token");
    store.add_token(&token("t2", None, 2)).await.expect("token");
    store.touch_token("t1", 50).await.expect("touch");
    store.revoke_token("t1", 60).await.expect("revoke");
    store.revoke_token("t1", 70).await.expect("revoke again");
    let t1 = store.token("t1").await.expect("read").expect("token");
    assert_eq!(
        (t1.last_used_at, t1.revoked_at, t1.expires_at),
        (Some(50), Some(60), Some(1001))
    );
    let err = store.revoke_token("t9", 1).await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    let all: Vec<String> = store
        .tokens(None)
        .await
        .expect("tokens")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(all, ["t2", "t1"]);
    assert_eq!(
        store.tokens(Some("contoso")).await.expect("tokens").len(),
        1
    );
    assert!(store.token("t9").await.expect("read").is_none());
}

async fn dkim_keys_change_state_together(store: &dyn Store) {
    let key = |selector: &str, algorithm: &str, at| DkimKey {
        domain: "Contoso.Example".into(),
        selector: selector.into(),
        algorithm: algorithm.into(),
        private_key: "private".into(),
        public_key: "public".into(),
        created_at: at,
        state: DkimKeyState::Pending,
        state_since: at,
    };
    store
        .add_dkim_keys(&[key("r1", "rsa-sha256", 1), key("e1", "ed25519-sha256", 1)])
        .await
        .expect("keys");
    let err = store.add_dkim_keys(&[key("r1", "rsa-sha256", 2)]).await;
    assert!(matches!(err, Err(StoreError::Exists { .. })), "{err:?}");
    store
        .set_dkim_states(
            "contoso.example.",
            &[
                ("r1".into(), DkimKeyState::Active),
                ("e1".into(), DkimKeyState::Active),
            ],
            9,
        )
        .await
        .expect("states");
    let keys = store
        .dkim_keys(Some("CONTOSO.example"))
        .await
        .expect("keys");
    assert_eq!(
        keys.iter()
            .map(|k| (k.selector.as_str(), k.state, k.state_since))
            .collect::<Vec<_>>(),
        [
            ("r1", DkimKeyState::Active, 9),
            ("e1", DkimKeyState::Active, 9)
        ]
    );
    // One unknown selector: nothing changes.
    let err = store
        .set_dkim_states(
            "contoso.example",
            &[
                ("r1".into(), DkimKeyState::Retiring),
                ("zz".into(), DkimKeyState::Retired),
            ],
            10,
        )
        .await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    let keys = store.dkim_keys(None).await.expect("keys");
    assert!(
        keys.iter().all(|k| k.state == DkimKeyState::Active),
        "{keys:?}"
    );
}

async fn accounts_and_sessions(store: &dyn Store) {
    store
        .add_tenant(&Tenant::named("contoso"))
        .await
        .expect("tenant");
    let account = Account {
        id: "A1".into(),
        email: "Ann@Contoso.Example".into(),
        role: "admin".into(),
        tenant: Some("contoso".into()),
        password_hash: None,
        totp_secret: None,
        recovery_codes: vec![],
        setup_token_hash: Some("setup-hash".into()),
        setup_expires_at: Some(100),
        failed_logins: 0,
        locked_until: None,
        created_at: 1,
        last_login_at: None,
        language: None,
    };
    store.add_account(&account).await.expect("account");
    let mut again = account.clone();
    again.id = "A2".into();
    again.setup_token_hash = None;
    let err = store.add_account(&again).await;
    assert!(matches!(err, Err(StoreError::Exists { .. })), "{err:?}");
    let mut a = store
        .account_by_email(" ANN@contoso.example ")
        .await
        .expect("read")
        .expect("account");
    assert_eq!(a.email, "ann@contoso.example");
    assert_eq!(
        store
            .account_by_setup("setup-hash")
            .await
            .expect("read")
            .map(|a| a.id),
        Some("A1".into())
    );
    a.password_hash = Some("$argon2id$y".into());
    a.totp_secret = Some("secret".into());
    a.recovery_codes = vec!["c1".into(), "c2".into()];
    a.setup_token_hash = None;
    a.setup_expires_at = None;
    a.failed_logins = 3;
    a.locked_until = Some(500);
    a.last_login_at = Some(400);
    a.language = Some("es".into());
    store.update_account(&a).await.expect("update");
    assert_eq!(store.account("A1").await.expect("read"), Some(a.clone()));
    assert!(
        store
            .account_by_setup("setup-hash")
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        store.accounts(Some("contoso")).await.expect("list").len(),
        1
    );
    let mut ghost = a.clone();
    ghost.id = "A9".into();
    let err = store.update_account(&ghost).await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    let session = |id: &str, created_at, expires_at| Session {
        id_hash: id.into(),
        account_id: "A1".into(),
        csrf: "c".into(),
        mfa: true,
        client: "127.0.0.1".into(),
        created_at,
        expires_at,
    };
    store
        .add_session(&session("s1", 1, 10))
        .await
        .expect("session");
    assert_eq!(
        store.session("s1").await.expect("read"),
        Some(session("s1", 1, 10))
    );
    // A new session sweeps the expired ones away.
    store
        .add_session(&session("s2", 20, 30))
        .await
        .expect("session");
    assert!(store.session("s1").await.expect("read").is_none());
    store.delete_session("s2").await.expect("delete");
    assert!(store.session("s2").await.expect("read").is_none());
}

async fn trace_prunes_in_batches_and_counts_per_day(store: &dyn Store) {
    const DAY: i64 = 86_400_000;
    let mut events = Vec::new();
    for i in 0..5i64 {
        let id = format!("M{i}");
        let at = if i < 3 { DAY + i } else { 2 * DAY + i };
        events.push(TraceEvent {
            message_id: id.clone(),
            at,
            kind: TraceKind::Received,
            recipient: None,
            detail: String::new(),
            summary: Some(TraceSummary {
                sender: "a@contoso.example".into(),
                tenant: Some("contoso".into()),
                origin: "user:a@contoso.example".into(),
                client_ip: "192.0.2.7".into(),
                size: 100,
                recipients: vec!["x@y.example".into(), format!("r{i}@y.example")],
            }),
        });
        events.push(TraceEvent {
            message_id: id,
            at,
            kind: TraceKind::Scanned,
            recipient: None,
            detail: if i == 1 {
                "verdict spam score 9"
            } else {
                "verdict clean"
            }
            .into(),
            summary: None,
        });
    }
    store.record_trace(events.into()).await.expect("record");
    let days = store.daily_traffic("contoso", 0).await.expect("days");
    assert_eq!(
        days.iter()
            .map(|d| (d.day_start, d.messages, d.recipients, d.suspicious))
            .collect::<Vec<_>>(),
        [(DAY, 3, 6, 1), (2 * DAY, 2, 4, 0)]
    );
    let replay = store.replay_trace("contoso", 0, 2).await.expect("replay");
    assert_eq!(replay.len(), 2);
    assert_eq!(replay[1].message_id, "M1");
    assert!(replay[1].suspicious && !replay[0].suspicious);
    let mut rcpts = replay[0].recipients.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["r0@y.example", "x@y.example"]);
    // Pruning goes in batches of the limit, oldest first.
    let p = store.prune(2 * DAY, 0, 2).await.expect("prune");
    assert_eq!(p.trace_messages, 2);
    let p = store.prune(2 * DAY, 0, 2).await.expect("prune");
    assert_eq!(p.trace_messages, 1);
    let p = store.prune(2 * DAY, 0, 2).await.expect("prune");
    assert_eq!(p.trace_messages, 0);
    let left = store
        .search_trace(&TraceQuery::default())
        .await
        .expect("search");
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].recipients.len(), 2);
}

async fn queue_orders_are_read_in_order_after_an_id_and_dropped_after_a_day(store: &dyn Store) {
    assert_eq!(store.last_queue_order().await.expect("last"), 0);
    let order = |at: i64, action: &str| QueueOrder {
        id: 0,
        at,
        node: "node-a".into(),
        action: action.into(),
        tenant: Some("contoso".into()),
        domain: None,
        sender: Some("<>".into()),
        actor: "ops".into(),
        role: "operator".into(),
        client: "192.0.2.1".into(),
        message: (action == "purge").then(|| "1A2B".to_string()),
    };
    let first = store
        .add_queue_order(&order(1_000, "hold"))
        .await
        .expect("add");
    let second = store
        .add_queue_order(&order(2_000, "purge"))
        .await
        .expect("add");
    assert!(second > first);
    assert_eq!(store.last_queue_order().await.expect("last"), second);
    let after = store.queue_orders_after(0, 10).await.expect("read");
    assert_eq!(
        after,
        vec![
            QueueOrder {
                id: first,
                ..order(1_000, "hold")
            },
            QueueOrder {
                id: second,
                ..order(2_000, "purge")
            },
        ]
    );
    assert_eq!(
        store
            .queue_orders_after(first, 10)
            .await
            .expect("read")
            .len(),
        1
    );
    assert_eq!(
        store.queue_orders_after(0, 1).await.expect("read")[0].id,
        first
    );
    // A day later, a new order drops the old ones.
    let third = store
        .add_queue_order(&order(
            1_500 + relayward_store::QUEUE_ORDERS_KEPT_MS,
            "release",
        ))
        .await
        .expect("add");
    let left = store.queue_orders_after(0, 10).await.expect("read");
    assert_eq!(
        left.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![second, third]
    );
}

async fn queue_reads_are_answered_per_node_and_dropped_with_their_answers(store: &dyn Store) {
    assert_eq!(store.last_queue_read().await.expect("last"), 0);
    let now = relayward_clock_ms();
    let read = |at: i64, kind: &str| QueueRead {
        id: 0,
        at,
        node: "node-a".into(),
        kind: kind.into(),
        tenant: Some("contoso".into()),
        domain: Some("example.net".into()),
        sender: None,
        message: (kind == "list").then(|| "1A2B".to_string()),
        by_sender: kind == "shape",
        limit: 20,
    };
    let first = store.add_queue_read(&read(now, "list")).await.expect("add");
    let second = store
        .add_queue_read(&read(now + 1, "shape"))
        .await
        .expect("add");
    assert!(second > first);
    assert_eq!(store.last_queue_read().await.expect("last"), second);
    assert_eq!(
        store.queue_reads_after(first, 10).await.expect("read"),
        vec![QueueRead {
            id: second,
            ..read(now + 1, "shape")
        }]
    );
    assert_eq!(
        store.queue_reads_after(0, 1).await.expect("read"),
        vec![QueueRead {
            id: first,
            ..read(now, "list")
        }]
    );
    store
        .answer_queue_read(first, "node-c", "{\"c\":1}")
        .await
        .expect("answer");
    store
        .answer_queue_read(first, "node-b", "{\"b\":0}")
        .await
        .expect("answer");
    store
        .answer_queue_read(first, "node-b", "{\"b\":1}")
        .await
        .expect("a second answer replaces the first");
    assert_eq!(
        store.queue_read_answers(first).await.expect("answers"),
        vec![
            ("node-b".to_string(), "{\"b\":1}".to_string()),
            ("node-c".to_string(), "{\"c\":1}".to_string()),
        ]
    );
    assert!(
        store
            .queue_read_answers(second)
            .await
            .expect("answers")
            .is_empty()
    );
    // Past the time reads are kept, a new one drops the old reads and their answers.
    let third = store
        .add_queue_read(&read(now + 2 + QUEUE_READS_KEPT_MS, "shape"))
        .await
        .expect("add");
    let left = store.queue_reads_after(0, 10).await.expect("read");
    assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), vec![third]);
    assert!(
        store
            .queue_read_answers(first)
            .await
            .expect("answers")
            .is_empty(),
        "the answers go with their read"
    );
}

async fn nodes_seen_say_how_long_ago_each_was_noted(store: &dyn Store) {
    let names = |seen: Vec<(String, i64)>| seen.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    let seen = store
        .nodes_seen("node-b", relayward_clock_ms())
        .await
        .expect("seen");
    assert_eq!(seen, vec![("node-b".to_string(), 0)]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let seen = store
        .nodes_seen("node-a", relayward_clock_ms())
        .await
        .expect("seen");
    assert_eq!(names(seen.clone()), vec!["node-a", "node-b"]);
    assert_eq!(seen[0].1, 0, "the node noting itself");
    assert!(
        (250..10_000).contains(&seen[1].1),
        "node-b was noted about 300 ms before: {seen:?}"
    );
    let listed = store
        .cluster_nodes(relayward_clock_ms())
        .await
        .expect("nodes");
    assert_eq!(names(listed.clone()), vec!["node-a", "node-b"]);
    assert!(listed[1].1 >= 250, "{listed:?}");
    assert!(store.forget_node("node-b").await.expect("forget"));
    assert!(!store.forget_node("node-b").await.expect("forget again"));
    assert_eq!(
        names(
            store
                .cluster_nodes(relayward_clock_ms())
                .await
                .expect("nodes")
        ),
        vec!["node-a"]
    );
}

async fn attempts_are_counted_per_key_over_a_window(store: &dyn Store) {
    for i in 0..3 {
        assert_eq!(
            store
                .count_attempt("sign-in:192.0.2.1", 1000, 3, 100 + i)
                .await
                .expect("count"),
            None
        );
    }
    // The fourth within the window is refused (not counted), naming the oldest counted.
    assert_eq!(
        store
            .count_attempt("sign-in:192.0.2.1", 1000, 3, 500)
            .await
            .expect("count"),
        Some(100)
    );
    assert_eq!(
        store
            .count_attempt("sign-in:192.0.2.2", 1000, 3, 500)
            .await
            .expect("count"),
        None,
        "another key counts apart"
    );
    // Once the first has left the window, one more is counted.
    assert_eq!(
        store
            .count_attempt("sign-in:192.0.2.1", 1000, 3, 1101)
            .await
            .expect("count"),
        None
    );
    // Read without counting: those at a time or later, and the oldest of them.
    let since = |key: &'static str, at: i64| async move {
        store.attempts_since(key, at).await.expect("read")
    };
    assert_eq!(since("sign-in:192.0.2.1", 102).await, (2, Some(102)));
    assert_eq!(since("sign-in:192.0.2.1", 1102).await, (0, None));
    assert_eq!(since("sign-in:192.0.2.2", 0).await, (1, Some(500)));
    assert_eq!(
        since("sign-in:192.0.2.1", 102).await,
        (2, Some(102)),
        "nothing counted"
    );
    // Several keys in one look, in the order asked; a key never counted is 0 (the count at
    // 1101 dropped those its window left behind: 102 and 1101 are what 192.0.2.1 has).
    let asked = [
        ("sign-in:192.0.2.2", 0),
        ("sign-in:192.0.2.9", 0),
        ("sign-in:192.0.2.1", 1101),
        ("sign-in:192.0.2.1", 0),
    ];
    assert_eq!(
        store.attempts_counted(&asked).await.expect("read"),
        vec![1, 0, 1, 2]
    );
    assert_eq!(
        store.attempts_counted(&[]).await.expect("read"),
        Vec::<usize>::new()
    );
}

async fn delayed_counts_are_replaced_per_node_and_read_while_fresh(store: &dyn Store) {
    let now = relayward_clock_ms();
    let rows = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(t, b)| (t.to_string(), b.to_string()))
            .collect()
    };
    let seen = |found: Vec<relayward_store::CounterRow>| {
        let mut v: Vec<(String, String, String)> = found
            .into_iter()
            .map(|r| (r.node, r.tenant, r.body))
            .collect();
        v.sort();
        v
    };
    let t = |n: &str, tenant: &str, b: &str| (n.to_string(), tenant.to_string(), b.to_string());
    store
        .share_delayed(
            "a",
            rows(&[("contoso", "1"), ("fabrikam", "2")]),
            60_000,
            now,
        )
        .await
        .expect("share");
    // Node a's second save replaces its first; node b reads both nodes.
    store
        .share_delayed(
            "a",
            rows(&[("contoso", "3"), ("fabrikam", "2")]),
            60_000,
            now,
        )
        .await
        .expect("share");
    let found = store
        .share_delayed("b", rows(&[("contoso", "5")]), 60_000, now)
        .await
        .expect("share");
    assert_eq!(
        seen(found),
        [
            t("a", "contoso", "3"),
            t("a", "fabrikam", "2"),
            t("b", "contoso", "5")
        ]
    );
    // A tenant whose backlog is gone from a node is no longer that node's.
    let found = store
        .share_delayed("a", rows(&[("contoso", "3")]), 60_000, now)
        .await
        .expect("share");
    assert_eq!(
        seen(found),
        [t("a", "contoso", "3"), t("b", "contoso", "5")]
    );
    // Rows older than the freshness asked for are left out of the answer (node b stopped).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let found = store
        .share_delayed("a", rows(&[("contoso", "4")]), 150, now + 300)
        .await
        .expect("share");
    assert_eq!(seen(found), [t("a", "contoso", "4")]);
    let found = store
        .share_delayed("a", Vec::new(), 150, now + 300)
        .await
        .expect("share");
    assert!(found.is_empty(), "{found:?}");
}

async fn mta_sts_policies_are_kept_until_their_age_runs_out(store: &dyn Store) {
    let row = |domain: &str, id: &str, expires_at: i64| relayward_store::MtaStsRow {
        domain: domain.into(),
        id: id.into(),
        policy: format!("version: STSv1\nmode: enforce\nmx: mx.{domain}\nmax_age: 86400\n"),
        fetched_at: 1_000,
        expires_at,
    };
    assert_eq!(
        store
            .mta_sts_policy("remote.example", 1_000)
            .await
            .expect("read"),
        None
    );
    store
        .save_mta_sts_policy(&row("remote.example", "a", 5_000), 1_000)
        .await
        .expect("save");
    store
        .save_mta_sts_policy(&row("other.example", "x", 3_000), 1_000)
        .await
        .expect("save");
    // A newer fetch replaces the domain's policy.
    store
        .save_mta_sts_policy(&row("remote.example", "b", 9_000), 2_000)
        .await
        .expect("save");
    assert_eq!(
        store
            .mta_sts_policy("remote.example", 2_000)
            .await
            .expect("read"),
        Some(row("remote.example", "b", 9_000))
    );
    assert_eq!(
        store
            .mta_sts_policy("other.example", 2_999)
            .await
            .expect("read"),
        Some(row("other.example", "x", 3_000))
    );
    // Past its age it is not read, and the next save takes it away.
    assert_eq!(
        store
            .mta_sts_policy("other.example", 3_000)
            .await
            .expect("read"),
        None
    );
    store
        .save_mta_sts_policy(&row("third.example", "t", 9_000), 4_000)
        .await
        .expect("save");
    assert_eq!(
        store
            .mta_sts_policy("other.example", 0)
            .await
            .expect("read"),
        None
    );
}

async fn bulk_bands_are_kept_per_node_and_band(store: &dyn Store) {
    let now = relayward_clock_ms();
    store
        .save_bulk_bands("a", vec![(-7, now, 2), (9, now, 3)], now)
        .await
        .expect("save");
    store
        .save_bulk_bands("a", vec![(-7, now, 5)], now)
        .await
        .expect("save again");
    store
        .save_bulk_bands("b", vec![(-7, now, 1)], now)
        .await
        .expect("save");
    let mut rows: Vec<(String, i64, i64)> = store
        .bulk_bands_since(now - 60_000)
        .await
        .expect("read")
        .into_iter()
        .map(|r| (r.node, r.band, r.recipients))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [("a".into(), -7, 5), ("a".into(), 9, 3), ("b".into(), -7, 1)]
    );
    // Content first seen more than a day ago goes at the next save.
    store
        .save_bulk_bands("c", vec![(1, now - 86_400_001, 4)], now)
        .await
        .expect("save");
    let bands: Vec<i64> = store
        .bulk_bands_since(0)
        .await
        .expect("read")
        .into_iter()
        .map(|r| r.band)
        .collect();
    assert!(!bands.contains(&1), "{bands:?}");
}

/// A database written before the claim indexes existed gets them filled when a node that has
/// them opens it: the step is undone by hand here, then the store opened again.
#[tokio::test]
async fn sqlite_claim_indexes_are_filled_for_rows_written_before_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite");
    {
        let store = SqliteStore::open(&path).expect("open");
        fill_before_the_claim_indexes(&store).await;
    }
    let c = rusqlite::Connection::open(&path).expect("raw");
    c.execute_batch(
        "DROP TABLE connector_ranges;
         DROP INDEX domains_reversed; DROP INDEX domains_tenant;
         DROP INDEX users_tenant; DROP INDEX routes_tenant; DROP INDEX counters_tenant;
         ALTER TABLE domains DROP COLUMN reversed;
         PRAGMA user_version = 17;",
    )
    .expect("undo step 18");
    drop(c);
    let store = SqliteStore::open(&path).expect("open again");
    found_after_the_claim_indexes(&store).await;
}

#[tokio::test]
async fn postgres_claim_indexes_are_filled_for_rows_written_before_them() {
    let Some(db) = relayward_store::testdb::create().await else {
        return;
    };
    {
        let store = PgStore::connect(&db.url).await.expect("connect");
        fill_before_the_claim_indexes(&store).await;
    }
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("raw");
    tokio::spawn(conn);
    c.batch_execute(
        "DROP TABLE connector_ranges; DROP INDEX counters_tenant;
         UPDATE relayward_schema SET version = 4;",
    )
    .await
    .expect("undo step 5");
    let store = PgStore::connect(&db.url).await.expect("connect again");
    found_after_the_claim_indexes(&store).await;
}

async fn fill_before_the_claim_indexes(store: &dyn Store) {
    store.add_tenant(&Tenant::named("a")).await.expect("tenant");
    for name in ["example.com", "mail.example.com"] {
        store.add_domain(&domain("a", name)).await.expect("domain");
    }
    store
        .add_connector(&connector_on("a", "k", &["10.9.0.0/16"]))
        .await
        .expect("connector");
}

async fn found_after_the_claim_indexes(store: &dyn Store) {
    assert_eq!(touching(store, &["10.9.8.7"]).await, ["a/k"]);
    let below: Vec<String> = related_names(store, "example.com").await;
    assert!(below.contains(&"mail.example.com".to_string()), "{below:?}");
}

/// The tables one tenant's reads touch.
const TENANT_TABLES: &[&str] = &[
    "tenants",
    "domains",
    "connectors",
    "users",
    "routes",
    "restrictions",
    "alerts",
    "counters",
    "audit",
    "api_tokens",
    "dkim_keys",
    "webhooks",
    "accounts",
];

/// One tenant's reads (and the claim check of its new domain) find its rows through its
/// indexes, never reading another tenant's, even
/// where the server keeps a statement's generic plan, as PostgreSQL may choose by itself after
/// a statement's fifth run. The database is set to generic plans only, and to avoid a scan of
/// the table wherever an index serves (so that what is checked does not hang on table sizes);
/// the server's own count of the rows each table's scans and index scans returned is read once
/// the store's connections have ended.
#[tokio::test]
async fn postgres_one_tenants_reads_use_its_indexes_under_generic_plans() {
    let Some(db) = relayward_store::testdb::create().await else {
        return;
    };
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("raw");
    tokio::spawn(conn);
    {
        // Tenant a has itself and a domain; b has a row in every table; twenty others have a
        // domain each.
        let store = PgStore::connect(&db.url).await.expect("connect");
        fill_every_tenant_table(&store).await;
    }
    let name: String = c
        .query_one("SELECT current_database()", &[])
        .await
        .expect("name")
        .get(0);
    // The filling store's connections report what they read when they end, which may be
    // after a reset made while they are still closing: the count starts once they are gone.
    until_alone(&c, &name).await;
    c.batch_execute(&format!(
        "ALTER DATABASE {name} SET plan_cache_mode = force_generic_plan;
         ALTER DATABASE {name} SET enable_seqscan = off;
         SELECT pg_stat_reset();"
    ))
    .await
    .expect("settings");

    // Tenant a's reads, as the admin center and the API make them.
    {
        let store = PgStore::connect(&db.url).await.expect("connect");
        let data = store.tenant_data("a").await.expect("tenant data");
        assert_eq!(data.map(|d| d.domains.len()), Some(1));
        store
            .restrictions(Some("a"), false)
            .await
            .expect("restrictions");
        store.alerts(Some("a"), 10).await.expect("alerts");
        store.counters(Some("a")).await.expect("counters");
        store.audit_log(Some("a"), 10).await.expect("audit");
        store.tokens(Some("a")).await.expect("tokens");
        store.dkim_keys(Some("a.example")).await.expect("dkim keys");
        store.webhooks(Some("a")).await.expect("webhooks");
        store.accounts(Some("a")).await.expect("accounts");
        // The claim check when a adds a domain: the name, its parents and the names below it.
        let related = store.related_domains("a.example").await.expect("related");
        assert_eq!(related.len(), 1);
    }
    let read = rows_read_once_counted(&c, |r| r.len() == TENANT_TABLES.len()).await;
    // a's own tenant and domain rows, once or twice; nothing of anyone else's.
    let others: Vec<_> = read
        .iter()
        .filter(|(t, n)| {
            *n > if t == "tenants" || t == "domains" {
                2
            } else {
                0
            }
        })
        .collect();
    assert!(others.is_empty(), "rows read for tenant a: {others:?}");

    // Every tenant's rows, read in one go, are counted as such: the check above can fail.
    until_alone(&c, &name).await;
    c.batch_execute("SELECT pg_stat_reset()")
        .await
        .expect("reset");
    {
        let store = PgStore::connect(&db.url).await.expect("connect");
        assert_eq!(
            store.directory().await.expect("directory").tenants.len(),
            22
        );
    }
    let read =
        rows_read_once_counted(&c, |r| r.iter().any(|(t, n)| t == "domains" && *n >= 22)).await;
    assert!(
        read.iter().any(|(t, n)| t == "domains" && *n >= 22),
        "{read:?}"
    );
}

async fn fill_every_tenant_table(store: &dyn Store) {
    for t in ["a", "b"]
        .into_iter()
        .map(String::from)
        .chain((0..20).map(|i| format!("c{i}")))
    {
        store.add_tenant(&Tenant::named(&t)).await.expect("tenant");
        let name = format!("{t}.example");
        store.add_domain(&domain(&t, &name)).await.expect("domain");
    }
    store
        .add_connector(&connector_on("b", "k", &["10.1.0.0/16"]))
        .await
        .expect("connector");
    store
        .add_user(&user("b", "u@b.example"))
        .await
        .expect("user");
    store
        .add_route(&Route {
            tenant: "b".into(),
            domain: "b.example".into(),
            host: "127.0.0.1:25".into(),
        })
        .await
        .expect("route");
    store
        .save_restriction(&restriction("R1", "b", 10, "active"))
        .await
        .expect("restriction");
    store
        .add_alerts(vec![AlertRow {
            id: 0,
            tenant: "b".into(),
            at: 1,
            severity: "high".into(),
            kind: "restriction".into(),
            subject: "s".into(),
            text: "t".into(),
        }])
        .await
        .expect("alert");
    store
        .save_counters("n1", vec![("b".into(), "{}".into())], relayward_clock_ms())
        .await
        .expect("counters");
    store
        .audit(&AuditEntry {
            at: 1,
            actor: "bob".into(),
            role: "admin".into(),
            tenant: Some("b".into()),
            action: "x".into(),
            client: "127.0.0.1".into(),
            mfa: false,
            detail: String::new(),
        })
        .await
        .expect("audit");
    store
        .add_token(&ApiToken {
            id: "t1".into(),
            name: "b's".into(),
            role: "admin".into(),
            tenant: Some("b".into()),
            secret_hash: "h".into(),
            created_at: 1,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        })
        .await
        .expect("token");
    store
        .add_dkim_keys(&[DkimKey {
            domain: "b.example".into(),
            selector: "s1".into(),
            algorithm: "ed25519-sha256".into(),
            private_key: "private".into(),
            public_key: "public".into(),
            created_at: 1,
            state: DkimKeyState::Active,
            state_since: 1,
        }])
        .await
        .expect("dkim key");
    store.add_webhook(&webhook("b")).await.expect("webhook");
    store
        .add_account(&Account {
            id: "A1".into(),
            email: "bob@b.example".into(),
            role: "admin".into(),
            tenant: Some("b".into()),
            password_hash: None,
            totp_secret: None,
            recovery_codes: vec![],
            setup_token_hash: None,
            setup_expires_at: None,
            failed_logins: 0,
            locked_until: None,
            created_at: 1,
            last_login_at: None,
            language: None,
        })
        .await
        .expect("account");
}

/// Rows returned by each of `TENANT_TABLES`' scans and index scans together, once the server
/// has counted what the store's connections did (a connection's counts arrive when it ends):
/// polled until `done` holds, for ten seconds at most.
/// Waits (10 s at most) until no other connection to database `name` is open.
async fn until_alone(c: &tokio_postgres::Client, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let others: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .await
            .expect("activity")
            .get(0);
        if others == 0 || std::time::Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn rows_read_once_counted(
    c: &tokio_postgres::Client,
    done: impl Fn(&[(String, i64)]) -> bool,
) -> Vec<(String, i64)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows = c
            .query(
                "SELECT t.relname::text,
                        COALESCE(t.seq_tup_read, 0)
                          + COALESCE((SELECT SUM(i.idx_tup_read) FROM pg_stat_user_indexes i
                                      WHERE i.relid = t.relid), 0)::bigint
                 FROM pg_stat_user_tables t
                 WHERE t.relname = ANY($1) AND COALESCE(t.seq_scan, 0) + COALESCE(t.idx_scan, 0) > 0
                 ORDER BY t.relname",
                &[&TENANT_TABLES],
            )
            .await
            .expect("statistics");
        let read: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if done(&read) || std::time::Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
