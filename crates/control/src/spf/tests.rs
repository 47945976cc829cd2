//! SPF's evaluation against a table of DNS answers: what receivers decide, the limits, and
//! what a check asks the DNS.

use super::*;
use crate::test_dns::Table;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

async fn spf(table: &Table, addr: &str, domain: &str) -> SpfResult {
    check(&mut Lookups::new(table), ip(addr), domain).await
}

#[tokio::test]
async fn addresses_ranges_and_qualifiers_decide_as_a_receiver_would() {
    let mut t = Table::default();
    t.txt.insert(
        "contoso.example",
        vec![
            "google-site-verification=abc",
            "v=spf1 ip4:192.0.2.0/28 ip6:2001:db8::/32 ~ip4:198.51.100.7 -all",
        ],
    );
    assert_eq!(
        spf(&t, "192.0.2.9", "contoso.example").await,
        SpfResult::Pass
    );
    assert_eq!(
        spf(&t, "192.0.2.16", "contoso.example").await,
        SpfResult::Fail
    );
    assert_eq!(
        spf(&t, "::ffff:192.0.2.1", "contoso.example").await,
        SpfResult::Pass
    );
    assert_eq!(
        spf(&t, "2001:db8::25", "contoso.example").await,
        SpfResult::Pass
    );
    assert_eq!(
        spf(&t, "198.51.100.7", "contoso.example").await,
        SpfResult::SoftFail
    );
    assert_eq!(
        spf(&t, "192.0.2.1", "fabrikam.example").await,
        SpfResult::None
    );
    t.txt
        .insert("neutral.example", vec!["v=spf1 ip4:203.0.113.1"]);
    assert_eq!(
        spf(&t, "192.0.2.1", "neutral.example").await,
        SpfResult::Neutral
    );
}

#[tokio::test]
async fn include_a_mx_and_redirect_follow_the_dns() {
    let mut t = Table::default();
    t.txt.insert(
        "contoso.example",
        vec!["v=spf1 mx include:_spf.relay.example -all"],
    );
    t.txt.insert(
        "_spf.relay.example",
        vec!["v=spf1 a:out.relay.example/30 ?all"],
    );
    t.mx.insert("contoso.example", vec!["mail.contoso.example."]);
    t.a.insert("mail.contoso.example", vec!["203.0.113.25"]);
    t.a.insert("out.relay.example", vec!["192.0.2.8"]);
    assert_eq!(
        spf(&t, "203.0.113.25", "contoso.example").await,
        SpfResult::Pass
    );
    // 192.0.2.8/30 holds .8 to .11; the include's own `?all` does not match for its caller.
    assert_eq!(
        spf(&t, "192.0.2.11", "contoso.example").await,
        SpfResult::Pass
    );
    assert_eq!(
        spf(&t, "192.0.2.12", "contoso.example").await,
        SpfResult::Fail
    );
    t.txt
        .insert("fabrikam.example", vec!["v=spf1 redirect=contoso.example"]);
    assert_eq!(
        spf(&t, "192.0.2.9", "fabrikam.example").await,
        SpfResult::Pass
    );
    assert_eq!(
        spf(&t, "192.0.2.99", "fabrikam.example").await,
        SpfResult::Fail
    );
    // A redirect after `all` is never taken.
    t.txt.insert(
        "woodgrove.example",
        vec!["v=spf1 ~all redirect=contoso.example"],
    );
    assert_eq!(
        spf(&t, "192.0.2.9", "woodgrove.example").await,
        SpfResult::SoftFail
    );
}

#[tokio::test]
async fn broken_records_and_limits_are_errors_not_guesses() {
    let mut t = Table::default();
    t.txt
        .insert("two.example", vec!["v=spf1 -all", "v=spf1 +all"]);
    t.txt
        .insert("bad.example", vec!["v=spf1 ip4:192.0.2.1 frobnicate -all"]);
    t.txt
        .insert("badip.example", vec!["v=spf1 ip4:2001:db8::1 -all"]);
    t.txt
        .insert("macro.example", vec!["v=spf1 exists:%{i}.rbl.example -all"]);
    t.txt.insert("ptr.example", vec!["v=spf1 ptr -all"]);
    t.txt
        .insert("nothing.example", vec!["v=spf1 include:none.example -all"]);
    t.txt
        .insert("slow.example", vec!["v=spf1 include:timeout.example -all"]);
    t.slow.push("timeout.example");
    // A loop of includes stops at the terms limit.
    t.txt
        .insert("loop.example", vec!["v=spf1 include:loop.example -all"]);
    // Lookups that find nothing: three of them are one too many.
    t.txt.insert(
        "void.example",
        vec!["v=spf1 a:x.example a:y.example a:z.example -all"],
    );
    let is_perm = |r: SpfResult| matches!(r, SpfResult::PermError(_));
    assert!(is_perm(spf(&t, "192.0.2.1", "two.example").await));
    assert!(is_perm(spf(&t, "192.0.2.1", "bad.example").await));
    assert!(is_perm(spf(&t, "192.0.2.1", "badip.example").await));
    assert!(is_perm(spf(&t, "192.0.2.1", "nothing.example").await));
    assert!(is_perm(spf(&t, "192.0.2.1", "loop.example").await));
    assert!(is_perm(spf(&t, "192.0.2.1", "void.example").await));
    assert!(matches!(
        spf(&t, "192.0.2.1", "macro.example").await,
        SpfResult::Unknown(_)
    ));
    assert!(matches!(
        spf(&t, "192.0.2.1", "ptr.example").await,
        SpfResult::Unknown(_)
    ));
    assert!(matches!(
        spf(&t, "192.0.2.1", "slow.example").await,
        SpfResult::TempError(_)
    ));
    // Not an SPF record: a TXT that merely starts alike.
    t.txt.insert("alike.example", vec!["v=spf10 -all"]);
    assert_eq!(spf(&t, "192.0.2.1", "alike.example").await, SpfResult::None);
}

/// Whatever a domain's owner writes in its record, letters outside ASCII included, a check
/// ends with a result.
#[tokio::test]
async fn any_record_text_gives_a_result() {
    let words = [
        "v=spf1",
        "all",
        "-all",
        "include:",
        "a",
        "mx",
        "ptr",
        "ip4:",
        "ip6:",
        "exists:",
        "redirect=",
        "exp=",
        "/",
        "//",
        ":",
        "=",
        "%{i}",
        "192.0.2.1",
        "2001:db8::/32",
        "r.example",
        "é",
        "ü",
        "😀",
        "abcdefé",
        "includ",
        "+",
        "-",
        "~",
        "?",
        " ",
        ".",
        "24",
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..20_000 {
        let mut record = String::from("v=spf1 ");
        for _ in 0..next(12) {
            record.push_str(words[next(words.len())]);
            if next(3) == 0 {
                record.push(' ');
            }
        }
        let mut t = Table::default();
        let leaked: &'static str = Box::leak(record.clone().into_boxed_str());
        t.txt.insert("r.example", vec![leaked]);
        t.a.insert("r.example", vec!["192.0.2.1"]);
        t.mx.insert("r.example", vec!["r.example"]);
        // Ends with a result (a byte cut inside a character once panicked here).
        let _ = spf(&t, "192.0.2.1", "r.example").await;
    }
}

#[tokio::test]
async fn one_check_asks_each_question_once_and_at_most_its_budget() {
    let mut t = Table::default();
    t.txt.insert("contoso.example", vec!["v=spf1 mx a -all"]);
    t.mx.insert(
        "contoso.example",
        vec!["m1.contoso.example", "m2.contoso.example"],
    );
    t.a.insert("m1.contoso.example", vec!["203.0.113.1"]);
    t.a.insert("m2.contoso.example", vec!["203.0.113.2"]);
    t.a.insert("contoso.example", vec!["203.0.113.3"]);
    let mut lookups = Lookups::new(&t);
    for addr in ["203.0.113.2", "203.0.113.3", "192.0.2.1"] {
        check(&mut lookups, ip(addr), "contoso.example").await;
    }
    // TXT, MX, three hosts: five questions for three addresses.
    assert_eq!(*t.asked.lock().expect("count"), 5);
    // Many records chained by includes to spend the budget: every level a new name.
    let mut t = Table::default();
    let names: Vec<&'static str> = (0..200)
        .map(|i| &*Box::leak(format!("n{i}.example").into_boxed_str()))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let record = format!("v=spf1 a:{} -all", names[(i + 1) % names.len()]);
        t.txt.insert(name, vec![Box::leak(record.into_boxed_str())]);
        t.a.insert(name, vec!["198.51.100.1"]);
    }
    let mut lookups = Lookups::new(&t);
    for name in &names {
        check(&mut lookups, ip("192.0.2.1"), name).await;
    }
    assert!(*t.asked.lock().expect("count") <= MAX_QUERIES);
}
