//! A running relay: `serve` wires the parts together — the store and its directory, the spool,
//! the delivery queue, the guard, the SMTP listeners with their policy, the HTTP listener with
//! health, metrics and the management API, and the background tasks (trace writer, webhook
//! sender, retention, DKIM keys, directory reloads).
//!
//! Must never: decide a rule of the control plane itself (who may change what; that is
//! `relayward_control`), or block the SMTP path on the store.

mod changes;
pub mod control_socket;
mod delayed;
mod guarding;
mod http;
mod notify;
mod open_files;
mod policy;
mod queue_orders;
mod retention;
mod shared_counters;
mod signer;
mod smtp_settings;
mod tls;
mod trace;
mod webhook_sender;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use relayward_config::Config;
use relayward_control::Control;
use relayward_delivery::dns::HickoryResolver;
use relayward_delivery::{DeliveryConfig, Queue, Router};
use relayward_smtp::{Listener, ListenerKind, Shutdown};
use relayward_spool::Spool;
use relayward_store::{Connector, Domain, Route, Store, Tenant, TenantData, User};
use relayward_tenancy::Directory;

use crate::policy::{PolicyStats, RelayPolicy};
use crate::trace::TraceSink;

async fn provision(store: &dyn Store, config: &Config) -> Result<()> {
    // Tenants made through the API or the command line keep their connectors: a range in the
    // file may not take a host from one of them (the file's own tenants are checked when it
    // is loaded).
    let in_file: std::collections::HashSet<&str> =
        config.tenants.iter().map(|t| t.name.as_str()).collect();
    let stored: Vec<Connector> = store
        .all_connectors()
        .await?
        .into_iter()
        .filter(|c| !in_file.contains(c.tenant.as_str()))
        .collect();
    for t in &config.tenants {
        for c in t.connectors.iter().filter(|c| !c.allow_overlap) {
            let ranges: Vec<_> = c
                .ips
                .iter()
                .filter_map(|ip| relayward_tenancy::parse_net(ip))
                .collect();
            if let Some((ours, theirs, other)) =
                relayward_tenancy::claims::overlapping(&t.name, &ranges, &stored)
            {
                bail!(
                    "tenant '{}': connector {} ({ours}) overlaps connector {} ({theirs}) of tenant '{}'; a source address belongs to one tenant (set allow_overlap = true on the connector if the servers are shared on purpose)",
                    t.name,
                    c.name,
                    other.name,
                    other.tenant
                );
            }
        }
    }
    // The same for a domain new to the store: one another tenant has verified there, or one
    // under or over it, is not the file's to give (the file's own tenants are checked against
    // each other when it is loaded; the exact name is refused by the store as a duplicate). A
    // domain the tenant already held at the last start stays: it was checked then, and what
    // tenants do since is checked where they do it.
    for t in &config.tenants {
        for d in &t.domains {
            let related = store.related_domains(&d.name.to_ascii_lowercase()).await?;
            if related
                .iter()
                .any(|r| r.tenant == t.name && r.name.eq_ignore_ascii_case(&d.name))
            {
                continue;
            }
            let related: Vec<Domain> = related
                .into_iter()
                .filter(|d| !in_file.contains(d.tenant.as_str()))
                .collect();
            if let Some(theirs) =
                relayward_tenancy::claims::domain_clash(&t.name, &d.name, &related)
            {
                bail!(
                    "tenant '{}': domain {} lies within or above {} of tenant '{}' (verified there); a domain belongs to one tenant",
                    t.name,
                    d.name,
                    theirs.name,
                    theirs.tenant
                );
            }
        }
    }
    for t in &config.tenants {
        let mut data = TenantData {
            tenant: Some(Tenant {
                name: t.name.clone(),
                language: t.language.clone(),
                subscription_ends: t.subscription_ends.clone(),
                admins: t.admins.clone(),
                managed_by_config: true,
                forwarding: t.forwarding,
                forwarding_domains: t.forwarding_domains.clone(),
            }),
            ..Default::default()
        };
        for d in &t.domains {
            data.domains.push(Domain {
                tenant: t.name.clone(),
                name: d.name.clone(),
                kind: d.kind,
                match_subdomains: d.match_subdomains,
                verified: d.verified,
                verification_token: relayward_control::random_hex(16),
            });
        }
        for c in &t.connectors {
            data.connectors.push(Connector {
                tenant: t.name.clone(),
                name: c.name.clone(),
                ips: c.ips.clone(),
                cert_name: c.cert_name.clone(),
                require_tls: c.require_tls,
                relay_unregistered: c.relay_unregistered,
                created_by: "configuration".into(),
                created_at: relayward_clock::now_secs(),
                reviewed: true,
            });
        }
        for u in &t.users {
            let password_hash = match &u.password {
                Some(p) => Some(relayward_tenancy::password::hash(p).map_err(|e| anyhow!(e))?),
                None => None,
            };
            data.users.push(User {
                tenant: t.name.clone(),
                address: u.address.clone(),
                aliases: u.aliases.clone(),
                password_hash,
                forward_to: u.forward_to.clone(),
                forward_only: u.forward_only,
            });
        }
        for (domain, host) in &t.routes {
            data.routes.push(Route {
                tenant: t.name.clone(),
                domain: domain.clone(),
                host: host.clone(),
            });
        }
        store
            .provision(&data)
            .await
            .with_context(|| format!("provisioning tenant '{}' from the configuration", t.name))?;
    }
    Ok(())
}

/// The SRS key: from the configuration, or generated once into the data directory (a new key
/// at every start would break bounces to copies forwarded before it).
fn srs_secret(config: &Config) -> Result<Vec<u8>> {
    if let Some(s) = &config.srs_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = config.data_dir.join("srs.key");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => Err(anyhow!(
            "the SRS key file {} is empty; remove it to have a new key generated",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = relayward_control::random_hex(32);
            relayward_control::private_files::write_private(
                &path,
                format!("{secret}\n").as_bytes(),
            )
            .with_context(|| format!("writing the SRS key to {}", path.display()))?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(anyhow!("reading the SRS key {}: {e}", path.display())),
    }
}

struct DirectoryRouter {
    directory: Arc<RwLock<Arc<Directory>>>,
    guard: Arc<guarding::GuardHandle>,
    srs: Arc<policy::srs::Srs>,
}

impl Router for DirectoryRouter {
    fn route(&self, domain: &str) -> Option<String> {
        let dir = self
            .directory
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        dir.route(domain).map(|r| r.host.clone())
    }

    fn refusal(&self, env: &relayward_spool::Envelope) -> Option<String> {
        self.guard.refusal_for(env)
    }

    fn report_to(&self, sender: &str) -> String {
        // A forwarded copy's sender is one of our SRS addresses (a copy forwarded twice wraps
        // another): the report goes to the original sender. One not ours, or not valid, stays.
        match self.srs.reverse_all(sender, relayward_clock::now_secs()) {
            Ok(Some(original)) => original,
            _ => sender.to_string(),
        }
    }

    fn language(&self, tenant: Option<&str>) -> String {
        let dir = self
            .directory
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        tenant
            .and_then(|t| dir.tenant(t))
            .map_or_else(|| "en".to_string(), |t| t.language.to_string())
    }
}

/// The sockets a node serves on. `bind` takes them from the configuration; a test or an embedding
/// program may bind its own (port 0) and hand them in.
pub struct Listeners {
    pub relay: tokio::net::TcpListener,
    pub submission: tokio::net::TcpListener,
    /// Submission over implicit TLS (`submissions_listen`), when configured.
    pub submissions: Option<tokio::net::TcpListener>,
    pub http: tokio::net::TcpListener,
}

impl Listeners {
    /// The configuration's `relay_listen`, `submission_listen`, `submissions_listen` and
    /// `[http] listen`.
    pub async fn bind(config: &Config) -> Result<Listeners> {
        Ok(Listeners {
            relay: bind(config.relay_listen, "relay SMTP").await?,
            submission: bind(config.submission_listen, "submission SMTP").await?,
            submissions: match config.submissions_listen {
                Some(addr) => Some(bind(addr, "implicit-TLS submission SMTP").await?),
                None => None,
            },
            http: bind(config.http_listen, "HTTP").await?,
        })
    }
}

/// The TLS files the configuration names, loaded as at start (for `check-config`).
pub use tls::{Checked as CheckedCertificate, TlsCheck, check as check_tls};

/// Runs the relay on the configuration's addresses until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<()> {
    let stop = wait_for_signal();
    let listeners = Listeners::bind(&config).await?;
    serve(config, listeners, stop).await
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {what} on {addr} (is another server using it?)")
    })
}

/// Runs the relay on `listeners` until `stop` completes, then finishes open sessions (up to
/// 30 s), flushes the spool and returns. Prints one `relayward ready ...` line on stdout when
/// it accepts mail.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    relayward_control::private_files::data_dir(&config.data_dir)?;
    let store = relayward_control::open_store(&config).await?;
    if config.clustered() {
        tracing::info!(node = %config.node_name, "cluster mode: the store is the shared PostgreSQL database");
    }
    if let Err(e) = provision(store.as_ref(), &config).await {
        // On a full disk the relay still starts on the tenants as stored at the last start,
        // refuses new mail and delivers what it holds; anything else is a real error.
        let full = e.chain().any(|c| {
            c.downcast_ref::<relayward_store::StoreError>()
                .is_some_and(|s| s.is_disk_full())
        });
        if !full {
            return Err(e);
        }
        tracing::error!(error = %format!("{e:#}"), "the disk is full: starting on the tenants as stored before; the configuration file's changes apply at the next start with room");
    }
    let dyn_store: Arc<dyn Store> = store.clone();
    let directory = Arc::new(RwLock::new(Arc::new(Directory::build(
        store.directory().await?,
    ))));

    let (spool, recovered) = Spool::open(&config.data_dir.join("spool"), config.max_spool_size)
        .context("opening the spool")?;
    let (trace, trace_task) = TraceSink::start(dyn_store.clone());
    let resolver: Arc<dyn relayward_delivery::dns::Resolver> =
        Arc::new(HickoryResolver::new(config.dns_resolver).map_err(|e| anyhow!(e))?);
    let api_resolver = resolver.clone();
    let mut delivery = DeliveryConfig::new(config.hostname.clone());
    // Two relays left on the placeholder name are not each other: the loop check needs a name
    // the operator chose.
    if config.hostname == relayward_config::DEFAULT_HOSTNAME {
        delivery.own_name = None;
    }
    delivery.smart_host = config.smart_host.clone();
    delivery.remote_port = config.remote_port;
    delivery.retry_schedule = config.retry_schedule.clone();
    delivery.expire_after = config.expire_after;
    delivery.delay_notice_after = config.delay_notice_after;
    let pool = |p: &[relayward_config::PoolAddress]| {
        p.iter()
            .map(|a| relayward_delivery::PoolAddress {
                ip: a.ip,
                helo: a.hostname.clone(),
            })
            .collect()
    };
    delivery.normal_pool = pool(&config.normal_pool);
    delivery.high_risk_pool = pool(&config.high_risk_pool);
    delivery.private_destinations = config.private_destinations.clone();
    delivery.check_sender_dns = config.smart_host.is_none() || config.dns_resolver.is_some();
    if let Some(h) = &config.high_risk_hostname {
        delivery.high_risk_hostname = h.clone();
    }
    delivery.max_per_destination = config.max_per_destination;
    delivery.recipients_per_transaction = config.recipients_per_transaction;
    delivery.max_concurrent_messages = config.max_concurrent_messages;
    delivery.max_body_memory = config.max_body_memory;
    delivery.connect_timeout = config.connect_timeout;
    delivery.command_timeout = config.delivery_command_timeout;
    delivery.tls = config.delivery_tls;
    delivery.chunking = config.delivery_chunking;
    delivery.dane = config.dane.then_some(config.dns_resolver);
    delivery.mta_sts = config
        .mta_sts
        .as_ref()
        .map(|m| relayward_delivery::mta_sts::MtaStsConfig {
            ca_file: m.ca_file.clone(),
            port: m.port,
            ..Default::default()
        });
    let guard = Arc::new(guarding::GuardHandle::new(
        config.limits.clone(),
        config
            .tenants
            .iter()
            .map(|t| (t.name.clone(), t.limits.clone()))
            .collect(),
        directory.clone(),
        &config.node_name,
        config.clustered(),
    ));
    guarding::restore(&guard, store.as_ref()).await;
    let srs = Arc::new(policy::srs::Srs::new(
        &srs_secret(&config)?,
        (config.srs_max_age.as_secs() / 86_400) as i64,
    ));
    let queue = Queue::new(
        delivery,
        spool.clone(),
        resolver,
        Arc::new(DirectoryRouter {
            directory: directory.clone(),
            guard: guard.clone(),
            srs: srs.clone(),
        }),
        Arc::new(guarding::QueueEvents {
            trace: trace.clone(),
            guard: guard.clone(),
        }),
    );
    let stats = Arc::new(PolicyStats::default());
    let signer = Arc::new(signer::DkimSigner::new(
        dyn_store.clone(),
        directory.clone(),
        stats.clone(),
    ));
    queue.set_signer(signer.clone());
    queue.keep_mta_sts_policies(dyn_store.clone());
    // Keys made, activated or retired on another node sign here at once, not after the cache's
    // half minute.
    if let Some(mut feed) = dyn_store.change_feed() {
        tokio::spawn(async move {
            loop {
                match feed.recv().await {
                    Ok(what) if what == "dkim" => signer.forget_keys(),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        signer.forget_keys()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }
    tokio::spawn(webhook_sender::run(
        dyn_store.clone(),
        config.webhooks.clone(),
    ));
    // Domains from the configuration file get their DKIM keys at first start, before the relay
    // listens: mail accepted in its first seconds must not leave unsigned.
    relayward_control::dkim_keys::generate_missing(
        dyn_store.clone(),
        config
            .tenants
            .iter()
            .flat_map(|t| {
                t.domains
                    .iter()
                    .filter(|d| d.verified)
                    .map(|d| d.name.clone())
            })
            .collect(),
    )
    .await;
    let recovered_count = recovered.len();
    for env in recovered {
        queue.enqueue(env);
    }
    if recovered_count > 0 {
        tracing::info!(
            messages = recovered_count,
            "recovered unfinished messages from the spool"
        );
    }

    let smtp_tls = tls::smtp(&config)?;
    let http_tls = match &config.http_tls {
        None => None,
        Some((cert, key)) => Some(tls::http_server_config(cert, key)?),
    };
    let certificates: Vec<Arc<tls::Certificate>> = std::iter::once(smtp_tls.certificate.clone())
        .chain(http_tls.as_ref().map(|(_, c)| c.clone()))
        .collect();
    let mut watched: Vec<Arc<dyn tls::Watched>> = certificates
        .iter()
        .map(|c| c.clone() as Arc<dyn tls::Watched>)
        .collect();
    if let Some(ca) = &smtp_tls.client_ca {
        watched.push(ca.clone());
    }
    let tls_task = tokio::spawn(tls::watch(watched));
    let checkers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let passwords = Arc::new(relayward_control::passwords::Checker::start(
        checkers,
        16 * checkers,
    )?);
    let auth_limits = Arc::new(relayward_control::passwords::Limiter::new(config.auth));
    let policy = Arc::new(RelayPolicy {
        directory: directory.clone(),
        spool: spool.clone(),
        queue: queue.clone(),
        trace: trace.clone(),
        hostname: config.hostname.clone(),
        postmaster: config.postmaster.clone(),
        stats: stats.clone(),
        guard: guard.clone(),
        scanner: Arc::new(relayward_scan::Scanner::new(relayward_scan::Config {
            bulk_recipients: config.bulk_recipients,
        })),
        rspamd: config.rspamd.map(|address| relayward_scan::rspamd::Rspamd {
            address,
            timeout: config.rspamd_timeout,
        }),
        rspamd_failure: config.rspamd_failure,
        srs,
        forwarded_bytes: config.forwarded_bytes_per_message,
        resolver: api_resolver.clone(),
        passwords: passwords.clone(),
        auth_limits: auth_limits.clone(),
        store: dyn_store.clone(),
        shared_auth: config.clustered().then(|| policy::auth::SharedAuth {
            store: dyn_store.clone(),
            limits: config.auth,
        }),
        probes: Arc::new(policy::probes::Probes::of(&config)),
    });
    let caps = open_files::fit_to_limit(
        open_files::Caps {
            smtp: config.max_connections,
            http: config.http_max_connections,
        },
        2 + usize::from(config.submissions_listen.is_some()),
        config.max_concurrent_messages,
    );
    // One budget for the messages the SMTP listeners are receiving.
    let data_memory = relayward_smtp::memory::DataMemory::new(config.max_data_memory);
    let server_config =
        |kind| smtp_settings::of(&config, kind, caps.smtp, &data_memory, &smtp_tls.config);
    let relay = Listener::new(
        listeners.relay,
        server_config(ListenerKind::Relay),
        policy.clone(),
    );
    let submission = Listener::new(
        listeners.submission,
        server_config(ListenerKind::Submission),
        policy.clone(),
    );
    let submissions = listeners.submissions.map(|l| {
        let mut c = server_config(ListenerKind::Submission);
        c.implicit_tls = true;
        Listener::new(l, c, policy.clone())
    });
    let http_listener = listeners.http;
    let relay_addr = relay.local_addr()?;
    let submission_addr = submission.local_addr()?;
    let submissions_addr = match &submissions {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let http_addr = http_listener.local_addr()?;

    let shutdown = Shutdown::default();
    let grace = Duration::from_secs(30);
    let relay_task = tokio::spawn(relay.run(shutdown.clone(), grace));
    let submission_task = tokio::spawn(submission.run(shutdown.clone(), grace));
    let submissions_task = submissions.map(|l| tokio::spawn(l.run(shutdown.clone(), grace)));
    let queue_task = {
        let q = queue.clone();
        let stop = shutdown.subscribe();
        tokio::spawn(async move { q.run(stop, Duration::from_secs(10)).await })
    };
    let control = Arc::new(Control {
        passwords: Some(passwords.clone()),
        ..Control::new(&config, dyn_store.clone())
    });
    let socket_path = control_socket::path(&config.data_dir);
    let socket_task =
        control_socket::start(&socket_path, control.clone(), queue.clone(), spool.clone())?;
    let base_url = config.console_url(http_addr);
    // One sign-in limit per client address for the API and the console's pages.
    let logins = Arc::new(if config.clustered() {
        relayward_control::accounts::LoginLimiter::shared(dyn_store.clone())
    } else {
        relayward_control::accounts::LoginLimiter::default()
    });
    let app = http::router(
        http::NodeState {
            store: dyn_store.clone(),
            spool: spool.clone(),
            queue: queue.clone(),
            policy: stats.clone(),
            passwords: passwords.clone(),
            auth_limits,
            trace: trace.clone(),
            data_memory: data_memory.clone(),
            certificates,
            client_ca: smtp_tls.client_ca.clone(),
        },
        relayward_api::ApiState {
            control: control.clone(),
            queue: queue.clone(),
            resolver: api_resolver.clone(),
            logins: logins.clone(),
            base_url: base_url.clone(),
        },
        relayward_console::ConsoleState {
            control: control.clone(),
            resolver: api_resolver,
            logins,
            base_url: base_url.clone(),
            queue: Some(queue.clone()),
        },
    );
    let http_task = {
        let mut stop = shutdown.subscribe();
        let stopped = async move {
            let _ = stop.changed().await;
        };
        let tls = http_tls.map(|(c, _)| c);
        let bounds = http::Bounds {
            max_connections: caps.http,
            max_connections_per_ip: config.http_max_connections_per_ip,
            trusted_proxies: Arc::new(config.http_trusted_proxies.clone()),
            ..http::Bounds::default()
        };
        tokio::spawn(http::serve(http_listener, app, tls, bounds, stopped))
    };
    if config.clustered() {
        policy.scanner.share_bulk();
        tokio::spawn(shared_counters::share_bulk(
            policy.scanner.clone(),
            dyn_store.clone(),
            config.node_name.clone(),
        ));
        let (store, node) = (dyn_store.clone(), config.node_name.clone());
        tokio::spawn(queue_orders::run(
            store,
            control.clone(),
            queue.clone(),
            node,
        ));
    }
    let reload_task = tokio::spawn(reload_directory(
        dyn_store.clone(),
        directory.clone(),
        guard.clone(),
        config.clone(),
        stats.clone(),
    ));
    let retention_task = tokio::spawn(retention::run(
        dyn_store.clone(),
        config.trace_retention,
        config.audit_retention,
    ));
    let delayed_task = tokio::spawn(delayed::watch(
        queue.clone(),
        guard.clone(),
        dyn_store.clone(),
        config.clustered().then(|| config.node_name.clone()),
        config.delayed_alert_messages,
        config.delayed_alert_after,
    ));
    let guard_task = tokio::spawn(guarding::run(
        guard.clone(),
        dyn_store.clone(),
        guarding::AlertMail {
            spool: spool.clone(),
            queue: queue.clone(),
            hostname: config.hostname.clone(),
            sender: config.alert_sender.clone(),
        },
    ));

    // One line on stdout that scripts and tests wait for.
    println!(
        "relayward ready relay={relay_addr} submission={submission_addr}{} http={http_addr} data_dir={}",
        submissions_addr
            .map(|a| format!(" submissions={a}"))
            .unwrap_or_default(),
        config.data_dir.display()
    );
    tracing::info!(%relay_addr, %submission_addr, %http_addr, "relayward is running");
    notify::notify("READY=1\nSTATUS=accepting mail");

    stop.await;
    tracing::info!("shutting down: no new connections; finishing open sessions");
    notify::notify("STOPPING=1\nSTATUS=finishing open sessions");
    shutdown.trigger();
    let _ = relay_task.await;
    let _ = submission_task.await;
    if let Some(task) = submissions_task {
        let _ = task.await;
    }
    let _ = queue_task.await;
    let _ = http_task.await;
    reload_task.abort();
    tls_task.abort();
    guard_task.abort();
    delayed_task.abort();
    retention_task.abort();
    socket_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    spool.flush().await.context("final spool flush")?;
    drop(policy);
    drop(queue);
    drop(trace);
    let _ = tokio::time::timeout(Duration::from_secs(5), trace_task).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or SIGINT. Both are listened for as soon as this is called, before the relay says
/// it is ready, not when the returned future is first polled (after it said so): one that came
/// in between would have ended the process at once, without the orderly stop.
fn wait_for_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match streams {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Limit overrides set through the API, put in force in the guard; `applied` holds the tenants
/// that had one, so a removed override gives the tenant the defaults again.
async fn apply_limit_overrides(
    store: &dyn Store,
    guard: &guarding::GuardHandle,
    config: &Config,
    applied: &mut std::collections::HashSet<String>,
) {
    let rows = match store.tenant_limits().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read tenant limit overrides");
            return;
        }
    };
    let configured: std::collections::HashSet<&str> =
        config.tenants.iter().map(|t| t.name.as_str()).collect();
    let mut now = std::collections::HashSet::new();
    for (tenant, json) in rows {
        if configured.contains(tenant.as_str()) {
            continue;
        }
        match relayward_config::limits_from_overrides(&config.limits, &json) {
            Ok(l) => {
                guard.set_tenant_limits(&tenant, l);
                now.insert(tenant);
            }
            Err(e) => tracing::error!(tenant, error = %e, "tenant limit overrides ignored"),
        }
    }
    for gone in applied.difference(&now) {
        guard.set_tenant_limits(gone, config.limits.clone());
    }
    *applied = now;
}

/// Rebuilds the directory when the store says it changed (CLI, API, another node), and puts
/// limit overrides made through the API in force.
async fn reload_directory(
    store: Arc<dyn Store>,
    directory: Arc<RwLock<Arc<Directory>>>,
    guard: Arc<guarding::GuardHandle>,
    config: Config,
    stats: Arc<PolicyStats>,
) {
    let mut seen = store.directory_version().await.unwrap_or(0);
    stats
        .directory_version
        .store(seen, std::sync::atomic::Ordering::Relaxed);
    let mut applied = std::collections::HashSet::new();
    apply_limit_overrides(store.as_ref(), &guard, &config, &mut applied).await;
    let mut wait =
        changes::ChangeWait::new(store.change_feed(), "directory", Duration::from_secs(1));
    loop {
        wait.next().await;
        match store.directory_version().await {
            Ok(v) if v != seen => {
                let started = std::time::Instant::now();
                // Built on the blocking pool: a large directory takes a second and more of
                // arithmetic, which on an async thread would hold up the SMTP sessions and API
                // requests waiting for that thread.
                let built = match store.directory().await {
                    Ok(data) => tokio::task::spawn_blocking(move || Directory::build(data))
                        .await
                        .map_err(|e| anyhow::anyhow!("the directory build failed: {e}")),
                    Err(e) => Err(e.into()),
                };
                match built {
                    Ok(fresh) => {
                        let fresh = Arc::new(fresh);
                        if let Ok(mut d) = directory.write() {
                            *d = fresh;
                        }
                        seen = v;
                        stats
                            .directory_version
                            .store(v, std::sync::atomic::Ordering::Release);
                        apply_limit_overrides(store.as_ref(), &guard, &config, &mut applied).await;
                        let took = started.elapsed();
                        tracing::info!(
                            version = v,
                            took_ms = took.as_millis() as u64,
                            "directory reloaded"
                        );
                        // Reading and rebuilding take CPU every tenant's mail shares (seconds
                        // for a large directory). Changes that never stop (a script, or a
                        // tenant admin's on purpose) get it rebuilt at most a third of the time.
                        tokio::time::sleep(took * 2).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot reload the directory"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the directory version"),
        }
    }
}
