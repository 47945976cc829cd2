//! A tenant's domain checked as receivers read its DNS: DKIM records, SPF against the relay's
//! sending addresses, DMARC; through the API (a tenant's reader may ask, another tenant may not)
//! and the command line (which exits 1 while something is to be done).

use crate::util::{Answer, BIN, Dns, Relay, outcome, write_config};

fn txt(records: &[&str]) -> Answer {
    Answer::Txt(records.iter().map(|r| r.to_string()).collect())
}

#[test]
fn a_domain_check_says_what_receivers_will_find_and_what_to_change() {
    let dns = Dns::start(vec![]);
    // The relay sends from 127.0.0.2 (clean mail) and 127.0.0.3 (bulk, spam): the tenant's
    // SPF record lists the first only.
    dns.set(
        "contoso.example",
        "TXT",
        txt(&["some-other-proof=1", "v=spf1 ip4:127.0.0.2 -all"]),
    );
    let relay = Relay::start(&format!(
        "[delivery]\ndns_resolver = \"{}\"\nnormal_pool = [\"127.0.0.2\"]\nhigh_risk_pool = [\"127.0.0.3\"]\n",
        dns.addr
    ));
    relay.tenant_by_cli("contoso", "contoso.example");
    relay.cli(&["tenant", "add", "fabrikam"]);
    let reader = relay.token(&["--name", "r", "--role", "reader", "--tenant", "contoso"]);
    let other = relay.token(&["--name", "f", "--role", "admin", "--tenant", "fabrikam"]);
    let path = "/api/v1/tenants/contoso/domains/contoso.example/checks";

    let (status, report) = relay.api("GET", path, Some(&reader), None);
    assert_eq!(status, 200, "{report}");
    // Both keys the relay signs with, neither published yet: its signatures cannot be checked.
    let dkim = report["dkim"].as_array().expect("dkim");
    assert_eq!(dkim.len(), 2, "{report}");
    for k in dkim {
        assert_eq!(k["state"], "active", "{report}");
        assert_eq!(k["status"], "missing", "{report}");
        assert!(
            k["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("._domainkey.contoso.example")),
            "{report}"
        );
        assert!(
            k["advice"]
                .as_str()
                .is_some_and(|a| a.contains("publish the record")),
            "{report}"
        );
    }
    // SPF: the normal pool passes, the high-risk pool fails, and the advice names it.
    assert_eq!(report["spf"]["record"], "v=spf1 ip4:127.0.0.2 -all");
    assert_eq!(report["spf"]["status"], "not_authorised", "{report}");
    let results: Vec<String> = report["spf"]["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .map(|a| format!("{} {} {}", a["ip"], a["pool"], a["result"]))
        .collect();
    assert_eq!(
        results,
        [
            r#""127.0.0.2" "normal" "pass""#,
            r#""127.0.0.3" "high_risk" "fail""#
        ]
    );
    assert!(
        report["spf"]["advice"]
            .as_str()
            .is_some_and(|a| a.contains("127.0.0.3") && !a.contains("127.0.0.2")),
        "{report}"
    );
    assert_eq!(report["dmarc"]["status"], "missing", "{report}");
    assert!(
        report["dmarc"]["advice"]
            .as_str()
            .is_some_and(|a| a.contains("_dmarc.contoso.example")),
        "{report}"
    );

    // Another tenant cannot look at (or learn of) contoso's domain.
    let (status, answer) = relay.api("GET", path, Some(&other), None);
    assert_eq!(status, 404, "{answer}");

    // The command line says the same, and exits 1 while something is to be done.
    let (ok, text) = relay.cli_status(&["domain", "check", "contoso", "contoso.example"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("127.0.0.3 (high_risk pool): fail")
            && text.contains("DMARC  no record: missing")
            && text.contains("its DNS needs the changes above"),
        "{text}"
    );

    // Two SPF records: receivers take neither, and the check says why.
    dns.set(
        "contoso.example",
        "TXT",
        txt(&["v=spf1 ip4:127.0.0.2 -all", "v=spf1 ip4:127.0.0.3 -all"]),
    );
    let (ok, json) = relay.cli_status(&["domain", "check", "contoso", "contoso.example", "--json"]);
    assert!(!ok, "{json}");
    let report: serde_json::Value =
        serde_json::from_str(&json[..json.rfind('}').map_or(0, |i| i + 1)])
            .unwrap_or_else(|e| panic!("the report as JSON ({e}): {json}"));
    assert_eq!(report["spf"]["status"], "error", "{report}");
    assert!(
        report["spf"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("more than one SPF record")),
        "{report}"
    );

    // The tenant publishes the keys' records (as the check printed them), lets the relay's
    // addresses send through an include, and asks receivers to reject what fails.
    for k in dkim {
        let name = k["name"].as_str().expect("name");
        let record = k["expected"].as_str().expect("record");
        dns.set(name, "TXT", txt(&[record]));
    }
    dns.set(
        "contoso.example",
        "TXT",
        txt(&["v=spf1 ip4:127.0.0.2 include:_spf.relay.test -all"]),
    );
    dns.set(
        "_spf.relay.test",
        "TXT",
        txt(&["v=spf1 ip4:127.0.0.3 -all"]),
    );
    dns.set(
        "_dmarc.contoso.example",
        "TXT",
        txt(&["v=DMARC1; p=reject; rua=mailto:d@contoso.example"]),
    );
    // (The command line asks afresh; the running relay's resolver keeps answers for their TTL.)
    let text = relay.cli(&["domain", "check", "contoso", "contoso.example"]);
    assert_eq!(text.matches("(active): published").count(), 2, "{text}");
    assert!(
        text.contains("127.0.0.2 (normal pool): pass")
            && text.contains("127.0.0.3 (high_risk pool): pass")
            && text.contains("every address the relay sends from passes")
            && text.contains("at _dmarc.contoso.example: ok"),
        "{text}"
    );
    let json = relay.cli(&["domain", "check", "contoso", "contoso.example", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).expect("the report as JSON");
    assert_eq!(report["dmarc"]["policy"], "reject", "{report}");
    assert_eq!(report["spf"]["status"], "ok", "{report}");
}

/// The relay's own sending addresses: each needs a PTR record naming a host that resolves back
/// to it, and that name should be the address's EHLO name (`relayward check-dns`). Addresses of
/// TEST-NET-1: the resolver answers loopback addresses' PTR questions itself (`localhost`), and
/// the command looks the addresses up without the relay running.
#[test]
fn the_sending_addresses_reverse_dns_is_looked_up_as_receivers_will() {
    let ip = |s: &str| -> std::net::Ipv4Addr { s.parse().expect("address") };
    let dns = Dns::start(vec![
        (
            "10.2.0.192.in-addr.arpa",
            "PTR",
            Answer::Ptr(vec!["mta1.relay.test"]),
        ),
        ("mta1.relay.test", "A", Answer::A(vec![ip("192.0.2.10")])),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!(
            "[delivery]\ndns_resolver = \"{}\"\nnormal_pool = [{{ ip = \"192.0.2.10\", hostname = \"mta1.relay.test\" }}]\nhigh_risk_pool = [\"192.0.2.11\"]\nhigh_risk_hostname = \"bulk.relay.test\"\n",
            dns.addr
        ),
    );
    let check_dns = || {
        outcome(
            &std::process::Command::new(BIN)
                .args(["check-dns", "--config"])
                .arg(&config)
                .env("RELAYWARD_LOG", "warn")
                .output()
                .expect("run relayward check-dns"),
        )
    };
    let (ok, text) = check_dns();
    assert!(!ok, "{text}");
    assert!(
        text.contains("192.0.2.10 (normal pool, EHLO mta1.relay.test): ok")
            && text.contains("192.0.2.11 (high-risk pool, EHLO bulk.relay.test): no_ptr")
            && text.contains("point its PTR record at bulk.relay.test")
            && text.contains("needs the changes above"),
        "{text}"
    );
    // The PTR record is set, first to a name that is not the EHLO name, then to the right one.
    dns.set(
        "11.2.0.192.in-addr.arpa",
        "PTR",
        Answer::Ptr(vec!["generic-11.isp.test"]),
    );
    dns.set(
        "generic-11.isp.test",
        "A",
        Answer::A(vec![ip("192.0.2.11")]),
    );
    let (ok, text) = check_dns();
    assert!(!ok, "{text}");
    assert!(
        text.contains("192.0.2.11 (high-risk pool, EHLO bulk.relay.test): ehlo_differs")
            && text.contains("hostname = \"generic-11.isp.test\""),
        "{text}"
    );
    dns.set(
        "11.2.0.192.in-addr.arpa",
        "PTR",
        Answer::Ptr(vec!["bulk.relay.test"]),
    );
    dns.set("bulk.relay.test", "A", Answer::A(vec![ip("192.0.2.11")]));
    let (ok, text) = check_dns();
    assert!(ok, "{text}");
    assert!(
        text.contains("192.0.2.11 (high-risk pool, EHLO bulk.relay.test): ok"),
        "{text}"
    );
}
