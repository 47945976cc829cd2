use super::*;

const SPEC_EXAMPLE: &str = r#"
[smtp]
relay_listen = "127.0.0.1:2525"
submission_listen = "127.0.0.1:2587"
hostname = "relay.example.net"
[http]
listen = "127.0.0.1:8025"
[storage]
data_dir = "./relayward-data"
[delivery]
retry_schedule = ["1m", "5m", "15m", "30m", "1h", "2h", "4h"]
expire_after = "48h"
[limits]
unregistered_allowance_per_day = 1000
unregistered_suspicious_per_day = 50
tenant_suspicious_per_day = 500
tenant_suspicious_ratio = 0.10
connector_suspicious_per_day = 200
connector_suspicious_ratio = 0.30
user_suspicious_per_day = 20
user_recipients_per_day = 10000
user_messages_per_minute = 30
recipients_per_message = 500
max_message_size = "35MB"
[[tenants]]
name = "contoso"
language = "es"
subscription_ends = "2027-12-31"
admins = ["admin@contoso.example"]
domains = [ { name = "contoso.example", kind = "authoritative", verified = true } ]
connectors = [ { name = "on-prem", ips = ["127.0.0.1/32"], relay_unregistered = true } ]
users = [ { address = "alice@contoso.example", password = "change-me", forward_to = "alice@home.example" } ]
routes = [ { domain = "contoso.example", host = "127.0.0.1:2600" } ]
limits = { unregistered_allowance_per_day = 5 }
"#;

#[test]
fn the_spec_example_loads_with_its_values() {
    let raw: RawConfig = toml::from_str(SPEC_EXAMPLE).expect("parses");
    let c = Config::from_raw(raw).expect("valid");
    assert_eq!(
        c.limits,
        Limits::default(),
        "the example restates the defaults"
    );
    assert_eq!(c.expire_after, Duration::from_secs(48 * 3600));
    assert_eq!(c.tenants[0].limits.unregistered_allowance_per_day, 5);
    assert_eq!(
        c.tenants[0].limits.user_messages_per_minute, 30,
        "other limits inherited"
    );
    assert_eq!(c.tenants[0].language, "es");
    assert!(c.tenants[0].connectors[0].relay_unregistered);
}

#[test]
fn no_file_gives_the_embedded_defaults() {
    let c = Config::load(None).expect("defaults");
    assert_eq!(c.relay_listen.to_string(), "127.0.0.1:2525");
    assert_eq!(c.submission_listen.to_string(), "127.0.0.1:2587");
    assert_eq!(c.http_listen.to_string(), "127.0.0.1:8025");
    assert_eq!(c.limits.max_message_size, 35 * 1024 * 1024);
    assert_eq!(c.retry_schedule.len(), 7);
    assert_eq!(c.busy_command_timeout, Duration::from_secs(10));
    assert_eq!(c.max_junk_commands, 100);
    assert!(c.forbid_improper_pipelining);
    assert_eq!(c.greet_pause, Duration::ZERO);
    assert!(c.improper_pipelining_allowed_from.is_empty());
    assert_eq!(
        (
            c.refused_recipients_per_address,
            c.refused_recipients_window
        ),
        (100, Duration::from_secs(600))
    );
    assert_eq!(c.max_data_memory, 1024 * 1024 * 1024);
    assert_eq!(c.max_header_size, 1024 * 1024);
    assert_eq!(c.forwarded_bytes_per_message, 512 * 1024 * 1024);
    assert!(c.private_destinations.is_empty());
    assert_eq!(
        (c.http_max_connections, c.http_max_connections_per_ip),
        (1024, 64)
    );
}

#[test]
fn mistakes_are_named() {
    let err = |t: &str| {
        let raw: std::result::Result<RawConfig, _> = toml::from_str(t);
        match raw {
            Err(e) => e.to_string(),
            Ok(r) => format!("{:#}", Config::from_raw(r).expect_err("invalid")),
        }
    };
    assert!(err("[smtp]\nrelay_lisen = \"x\"").contains("relay_lisen"));
    assert!(err("[limits]\nrecipients_per_message = 5000").contains("between 1 and 1000"));
    assert!(
        err("[delivery]\nnormal_pool = [{ ip = \"192.0.2.1\", hostname = \"a b\" }]")
            .contains("delivery.normal_pool: \"a b\" is not a host name")
    );
    assert!(
        err("[delivery]\nhigh_risk_pool = [\"192.0.2.300\"]")
            .contains("delivery.high_risk_pool: \"192.0.2.300\" is not an IP address")
    );
    assert!(
        err("[delivery]\nrecipients_per_transaction = 0")
            .contains("recipients_per_transaction must be between 1 and 1000")
    );
    assert!(err("[delivery]\nexpire_after = \"2 weeks\"").contains("unknown unit"));
    assert!(
        err("[[tenants]]\nname = \"a\"\nconnectors = [{ name = \"c\", ips = [\"300.1.1.1\"] }]")
            .contains("not an address")
    );
    assert!(
        err("[smtp]\nbusy_command_timeout = \"0s\"").contains("busy_command_timeout"),
        "a zero wait would have idle sessions look at the busy flag without pause"
    );
    assert!(
        err("[smtp]\ngreet_pause = \"2m\"")
            .contains("smtp.greet_pause = \"2m\" is longer than 30s")
    );
    assert!(
        err("[smtp]\nimproper_pipelining_allowed_from = [\"printer\"]").contains(
            "smtp.improper_pipelining_allowed_from: \"printer\" is not an address or CIDR range"
        )
    );
    assert!(err("[smtp]\nmax_data_memory = \"lots\"").contains("smtp.max_data_memory"));
    assert!(err("[smtp]\nmax_header_size = \"-1\"").contains("smtp.max_header_size"));
    assert!(
        err("[forwarding]\nmax_bytes_per_message = \"lots\"")
            .contains("forwarding.max_bytes_per_message")
    );
    assert!(
        err("[delivery]\nprivate_destinations = [\"10.0.0.0/33\"]")
            .contains("delivery.private_destinations")
    );
    let raw: RawConfig =
        toml::from_str("[delivery]\nprivate_destinations = [\"10.20.0.0/16\", \"::1\"]")
            .expect("parses");
    assert_eq!(
        Config::from_raw(raw)
            .expect("valid")
            .private_destinations
            .len(),
        2
    );
    assert!(err("[http]\npublic_url = \"console.example.net\"").contains("http.public_url"));
    assert!(err("[http]\ntrusted_proxies = [\"proxy\"]").contains("http.trusted_proxies"));
    assert!(err("[http]\ntrusted_proxies = [\"10.0.0.0/8\"]").contains("wider than /16"));
    let raw: RawConfig =
        toml::from_str("[http]\npublic_url = \"https://console.example.net/\"").expect("parses");
    let c = Config::from_raw(raw).expect("valid");
    assert_eq!(
        c.console_url("127.0.0.1:8025".parse().expect("addr")),
        "https://console.example.net"
    );
    // Load balancers: addresses or narrow ranges, never a whole network.
    assert!(err("[smtp]\nproxy_protocol_from = [\"0.0.0.0/0\"]").contains("wider than /16"));
    assert!(err("[smtp]\nproxy_protocol_from = [\"2001:db8::/32\"]").contains("wider than /48"));
    assert!(err("[smtp]\nproxy_protocol_from = [\"lb1\"]").contains("smtp.proxy_protocol_from"));
    let raw: RawConfig = toml::from_str(
        "[smtp]\nproxy_protocol_from = [\"10.0.0.5\", \"10.1.0.0/24\", \"fd00::/64\"]",
    )
    .expect("parses");
    assert_eq!(
        Config::from_raw(raw)
            .expect("valid")
            .proxy_protocol_from
            .len(),
        3
    );
    let raw: RawConfig = toml::from_str("[smtp]\nmax_data_memory = \"2MiB\"").expect("parses");
    assert_eq!(
        Config::from_raw(raw).expect("valid").max_data_memory,
        2 * 1024 * 1024
    );
}

#[test]
fn a_domain_belongs_to_one_tenant_of_the_file() {
    let load = |a: &str, b: &str| {
        let text = format!(
            "[[tenants]]\nname = \"a\"\ndomains = [{a}]\n[[tenants]]\nname = \"b\"\ndomains = [{b}]\n"
        );
        let raw: RawConfig = toml::from_str(&text).expect("parses");
        Config::from_raw(raw).map_err(|e| format!("{e:#}"))
    };
    let x = r#"{ name = "x.example", verified = true }"#;
    let err = load(x, r#"{ name = "X.example" }"#).expect_err("the same domain twice");
    assert!(
        err.contains("tenant 'a': domain x.example is also domain x.example of tenant 'b'"),
        "{err}"
    );
    let err = load(x, r#"{ name = "sub.x.example", verified = true }"#).expect_err("below");
    assert!(
        err.contains("domain x.example lies above domain sub.x.example of tenant 'b'"),
        "{err}"
    );
    let err = load(r#"{ name = "sub.x.example" }"#, x).expect_err("within");
    assert!(
        err.contains("domain sub.x.example lies within domain x.example of tenant 'b'"),
        "{err}"
    );
    let err = load(&format!("{x}, {x}"), r#"{ name = "y.example" }"#).expect_err("twice");
    assert!(err.contains("domain x.example is listed twice"), "{err}");
    // Neither verified: a claim not yet proven on either side (the API lets both wait for
    // their TXT proof), and unrelated names.
    load(r#"{ name = "x.example" }"#, r#"{ name = "sub.x.example" }"#).expect("unproven");
    load(x, r#"{ name = "notx.example", verified = true }"#).expect("unrelated");
}

#[test]
fn a_user_has_at_most_a_hundred_aliases() {
    let load = |n: usize| {
        let aliases: Vec<String> = (0..n).map(|i| format!("\"a{i}@x.example\"")).collect();
        let text = format!(
            "[[tenants]]\nname = \"a\"\ndomains = [{{ name = \"x.example\", verified = true }}]\nusers = [{{ address = \"u@x.example\", aliases = [{}] }}]\n",
            aliases.join(", ")
        );
        let raw: RawConfig = toml::from_str(&text).expect("parses");
        Config::from_raw(raw).map_err(|e| format!("{e:#}"))
    };
    load(100).expect("a hundred");
    let err = load(101).expect_err("one more");
    assert!(
        err.contains("user \"u@x.example\" has 101 aliases; a user has at most 100"),
        "{err}"
    );
}

#[test]
fn forwarding_domains_and_addresses_are_held_to_the_apis_bounds() {
    let load = |tenant_lines: &str| {
        let text = format!(
            "[[tenants]]\nname = \"a\"\ndomains = [{{ name = \"x.example\", verified = true }}]\n{tenant_lines}\n"
        );
        let raw: RawConfig = toml::from_str(&text).expect("parses");
        Config::from_raw(raw).map_err(|e| format!("{e:#}"))
    };
    let listed = |n: usize| {
        let d: Vec<String> = (0..n).map(|i| format!("\"d{i}.example\"")).collect();
        format!("forwarding_domains = [{}]", d.join(", "))
    };
    let c = load(&listed(1000)).expect("a thousand");
    assert_eq!(c.tenants[0].forwarding_domains.len(), 1000);
    let err = load(&listed(1001)).expect_err("one more");
    assert!(
        err.contains("forwarding_domains lists 1001 domains, at most 1000"),
        "{err}"
    );
    let err = load("forwarding_domains = [\"bob@home.example\"]").expect_err("an address");
    assert!(
        err.contains("forwarding_domains: \"bob@home.example\" is not a domain name"),
        "{err}"
    );
    let err = load("forwarding = \"listed\"").expect_err("listing nothing");
    assert!(err.contains("needs forwarding_domains"), "{err}");
    // Written in Unicode, kept as A-labels, as the API keeps them.
    let c = load("forwarding_domains = [\"B\u{fc}cher.example\"]").expect("an IDN");
    assert_eq!(c.tenants[0].forwarding_domains, ["xn--bcher-kva.example"]);

    let long_local = "l".repeat(65);
    let err = load(&format!(
        "users = [{{ address = \"u@x.example\", aliases = [\"{long_local}@x.example\"] }}]"
    ))
    .expect_err("a local part over 64");
    assert!(err.contains("is longer than an address may be"), "{err}");
    let long_domain = format!("{}.example", "d".repeat(250));
    let err = load(&format!(
        "users = [{{ address = \"u@x.example\", forward_to = \"u@{long_domain}\" }}]"
    ))
    .expect_err("an address over 254");
    assert!(err.contains("is longer than an address may be"), "{err}");
    let err = load(&format!("admins = [\"admin@{long_domain}\"]")).expect_err("an admin");
    assert!(err.contains("admin \"admin@"), "{err}");
    load(&format!(
        "admins = [\"admin@x.example\"]\nusers = [{{ address = \"{}@x.example\" }}]",
        "l".repeat(64)
    ))
    .expect("at the bounds");
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("35MB").expect("size"), 36_700_160);
    assert_eq!(parse_duration("90s").expect("d"), Duration::from_secs(90));
    assert_eq!(
        parse_duration("500ms").expect("d"),
        Duration::from_millis(500)
    );
}

#[test]
fn a_pool_lists_addresses_alone_or_with_their_ehlo_name() {
    let raw: RawConfig = toml::from_str(
        "[delivery]\nnormal_pool = [\"192.0.2.1\", { ip = \"2001:db8::1\", hostname = \"MTA1.Example.NET\" }]",
    )
    .expect("parses");
    let c = Config::from_raw(raw).expect("valid");
    assert_eq!(
        c.normal_pool,
        vec![
            PoolAddress {
                ip: "192.0.2.1".parse().expect("ip"),
                hostname: None
            },
            PoolAddress {
                ip: "2001:db8::1".parse().expect("ip"),
                hostname: Some("mta1.example.net".into())
            },
        ]
    );
    assert!(c.high_risk_pool.is_empty());
}
