//! The admin center and support console in a real headless Chromium, with real SMTP traffic:
//! the seeds' story from a compromised on-premises server to mail flowing again, once in
//! English and once in Spanish, axe-core on every page visited; and tenant isolation by page
//! and by form post.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::util::*;

const GTUBE: &str = "Subject: offer\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
const CLEAN: &str = "Subject: invoice\r\n\r\nThe invoice is attached.\r\n";
const PASSWORD: &str = "correct horse battery staple";

/// The console's own words file: the page must say what the file says.
fn words(lang: &str) -> BTreeMap<String, String> {
    let path = format!(
        "{}/../console/words/{lang}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    toml::from_str(&std::fs::read_to_string(path).expect("words file")).expect("words parse")
}

fn word<'a>(w: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    w.get(key).map(String::as_str).expect(key)
}

/// A words text up to its first placeholder: what a page shows whatever fills it.
fn lead<'a>(w: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    let t = word(w, key);
    t.split('{').next().unwrap_or(t).trim_end()
}

fn relay_with(rx: SocketAddr, dns: SocketAddr) -> Relay {
    Relay::start(&format!(
        r#"
[delivery]
smart_host = "{rx}"
dns_resolver = "{dns}"
retry_schedule = ["1s"]
[limits]
unregistered_allowance_per_day = 3
user_suspicious_per_day = 3
"#
    ))
}

/// The setup page's path from the command line's answer.
fn setup_path(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.contains("/setup/") && !w.contains("/api/v1/"))
        .and_then(|w| w.find("/setup/").map(|i| w[i..].to_string()))
        .unwrap_or_else(|| panic!("a setup page in {out}"))
}

fn has(page: &str, want: &str, step: &str) {
    assert!(
        page.contains(want),
        "{step}: the page should say {want:?}; it says:\n{page}"
    );
}

/// Makes the operator oncall@relay.example and signs in as it; returns the page signed in to.
fn sign_in_as_operator(b: &mut Browser, relay: &Relay, w: &BTreeMap<String, String>) -> String {
    let out = relay.cli(&["operator", "create", "oncall@relay.example"]);
    set_up_and_sign_in(b, relay, w, &setup_path(&out), "oncall@relay.example")
}

/// Finishes an account's setup on its page and signs in; returns the page signed in to.
fn set_up_and_sign_in(
    b: &mut Browser,
    relay: &Relay,
    w: &BTreeMap<String, String>,
    setup: &str,
    email: &str,
) -> String {
    let base = format!("http://{}", relay.http);
    b.forget();
    b.go(&format!("{base}{setup}"));
    let page = b.text();
    has(&page, word(w, "setup_title"), "setup page");
    assert!(
        b.exists("figure.qr svg"),
        "the setup page draws the QR code"
    );
    let secret = b.element_text("code.secret");
    b.axe("setup");
    b.fill("#password", PASSWORD);
    b.fill("#code", &totp_now(&secret));
    b.click("main form button");
    let page = b.text();
    has(&page, word(w, "setup_done_title"), "setup finished");
    let codes = b.js("return document.querySelectorAll('ol.codes li').length;");
    assert_eq!(codes, 10, "ten recovery codes shown once");

    b.go(&format!("{base}/sign-in"));
    b.axe("sign-in");
    b.fill("#email", email);
    b.fill("#password", "wrong password");
    b.fill("#code", &totp_now(&secret));
    b.click("main form button");
    has(&b.text(), word(w, "signin_invalid"), "a wrong password");
    b.fill("#password", PASSWORD);
    b.fill("#code", &totp_now(&secret));
    b.click("main form button");
    b.url()
}

fn walk(lang: &str) {
    let Some(mut b) = Browser::start(lang) else {
        return;
    };
    let w = words(lang);
    let dns = Dns::start(vec![]);
    let rx = Receiver::start(false);
    let relay = relay_with(rx.addr, dns.addr);
    let base = format!("http://{}", relay.http);
    relay.cli(&[
        "tenant",
        "add",
        "contoso",
        "--language",
        lang,
        "--admin",
        "admin@contoso.example",
    ]);
    relay.cli(&[
        "connector",
        "add",
        "contoso",
        "on-prem",
        "--ip",
        "127.0.0.1/32",
        "--relay-unregistered",
    ]);
    relay.cli(&["domain", "add", "contoso", "contoso.example", "--verified"]);
    relay.cli(&["user", "add", "contoso", "bob@contoso.example"]);
    relay.wait_directory();

    // The on-premises server is compromised: bob's account sends spam, and mail for a
    // domain that is not the tenant's goes out until the relay answers 5.7.750.
    let mut c = wait_for(Duration::from_secs(10), || {
        let mut c = relay.client();
        c.cmd("EHLO onprem.contoso.example");
        let r = c.transaction("bob@contoso.example", &["x@remote.example"], GTUBE);
        (r.code == 250).then_some(c)
    })
    .expect("the tenant's connector relays");
    assert_eq!(
        c.transaction("bob@contoso.example", &["x@remote.example"], GTUBE)
            .code,
        250
    );
    let r = c.transaction("bob@contoso.example", &["x@remote.example"], GTUBE);
    assert!(r.text().starts_with("550 5.1.8"), "{r:?}");
    for i in 0..3 {
        let r = c.transaction(
            "billing@fabrikam.example",
            &["victim@remote.example"],
            CLEAN,
        );
        assert_eq!(
            r.code, 250,
            "unregistered message {i} within the allowance: {r:?}"
        );
    }
    let r = c.transaction(
        "billing@fabrikam.example",
        &["victim@remote.example"],
        CLEAN,
    );
    assert_eq!(
        r.text(),
        "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"
    );
    wait_for(Duration::from_secs(10), || {
        let out = relay.cli(&["restrictions", "--tenant", "contoso", "--json"]);
        (out.contains("tenant_unregistered") && out.contains("\"user\"")).then_some(())
    })
    .expect("both restrictions stored");

    // The tenant admin sets up the account (TOTP) and signs in.
    let out = relay.cli(&[
        "account",
        "create",
        "admin@contoso.example",
        "--role",
        "admin",
        "--tenant",
        "contoso",
    ]);
    let url = set_up_and_sign_in(
        &mut b,
        &relay,
        &w,
        &setup_path(&out),
        "admin@contoso.example",
    );
    assert!(
        url.ends_with("/t/contoso"),
        "an admin lands on the tenant's home: {url}"
    );

    // Home: blocked for unregistered domains, why, and where to go next.
    let page = b.text();
    for want in [
        word(&w, "home_blocked"),
        "5.7.750",
        word(&w, "kind_tenant_unregistered"),
        word(&w, "reason_unregistered_allowance"),
        "fabrikam.example",
        "on-prem",
        "5.1.8",
        "bob@contoso.example",
        word(&w, "next_checklist"),
    ] {
        has(&page, want, "home");
    }
    b.axe("home");
    b.screenshot(&format!("{lang}-home-restricted"));
    b.width(390);
    b.axe("home at a phone's width");
    b.screenshot(&format!("{lang}-home-phone"));
    b.width(1280);

    // Traffic: the day's volume drawn with its suspicious part, against the limits.
    b.go(&format!("{base}/t/contoso/traffic"));
    let page = b.text();
    has(&page, word(&w, "chart_24h_title"), "traffic");
    assert!(
        b.exists("svg#chart-24h") || b.exists("svg.chart"),
        "the chart is drawn"
    );
    let bars = b.js("return document.querySelectorAll('svg.chart rect[fill=\"#c1272d\"]').length;");
    assert!(
        bars.as_u64().unwrap_or(0) >= 1,
        "the suspicious part is drawn: {page}"
    );
    b.axe("traffic");
    b.screenshot(&format!("{lang}-traffic"));

    // Message trace: the messages of the compromised sender, and one's timeline.
    b.go(&format!(
        "{base}/t/contoso/trace?sender=billing%40fabrikam.example"
    ));
    has(&b.text(), "billing@fabrikam.example", "trace search");
    b.axe("trace search");
    b.click("main table a[href*='/trace/']");
    let page = b.text();
    for want in [
        word(&w, "timeline"),
        "received",
        "attributed",
        "scanned",
        "verdict clean",
        "victim@remote.example",
    ] {
        has(&page, want, "trace timeline");
    }
    // Its end: delivered, or failed with an NDR when the restriction caught it in the queue.
    let end = wait_for(Duration::from_secs(20), || {
        b.go(&b.url());
        let page = b.text();
        (page.contains("delivered") || page.contains("ndr_sent")).then_some(page)
    })
    .unwrap_or_else(|| panic!("the timeline shows how the message ended: {}", b.text()));
    assert!(
        end.contains("250") || end.contains("5.7.750 Service unavailable"),
        "the remote answer or the restriction's reply: {end}"
    );
    b.axe("trace timeline");
    b.screenshot(&format!("{lang}-trace-timeline"));

    // Accepted domains: add the domain the server was sending for, publish, verify.
    b.go(&format!("{base}/t/contoso/domains"));
    b.axe("domains");
    b.fill("#domain", "fabrikam.example");
    b.click("main form.card button");
    has(&b.text(), word(&w, "done_domain_added"), "domain added");
    let record = b
        .js("return [...document.querySelectorAll('td code')].map(e => e.textContent).join('\\n');")
        .as_str()
        .unwrap_or("")
        .to_string();
    let proof = record
        .split('"')
        .find(|s| s.starts_with("relayward-verification="))
        .unwrap_or_else(|| panic!("the TXT record to publish: {record}"))
        .to_string();
    b.click("form[action$='/fabrikam.example/verify'] button");
    let page = b.text();
    has(&page, word(&w, "no_txt_found"), "verify before publishing");
    has(&page, &proof, "verify says what it looked for");
    dns.set("fabrikam.example", "TXT", Answer::Txt(vec![proof.clone()]));
    b.click("form[action$='/fabrikam.example/verify'] button");
    has(
        &b.text(),
        &word(&w, "verified_now").replace("{domain}", "fabrikam.example"),
        "verified",
    );
    b.axe("domains after verification");
    // DKIM: the records to publish for the tenant's domains.
    let page = b.text();
    has(&page, "._domainkey.contoso.example", "DKIM records");
    has(&page, "v=DKIM1", "DKIM records");
    // The DNS check of the domain just verified: its keys' records are not published yet, and
    // it has neither an SPF nor a DMARC record; each says what to do.
    b.click("a[href$='/domains/fabrikam.example/checks']");
    let page = b.text();
    let of_fabrikam = |key: &str| word(&w, key).replace("{domain}", "fabrikam.example");
    has(&page, &of_fabrikam("check_title"), "DNS check");
    assert_eq!(
        page.matches(word(&w, "check_dkim_todo_active")).count(),
        2,
        "both keys' records are to be published: {page}"
    );
    has(&page, &of_fabrikam("check_spf_missing"), "no SPF record");
    has(
        &page,
        &of_fabrikam("check_dmarc_missing"),
        "no DMARC record",
    );
    b.axe("DNS check");

    // Connectors: the one that carried the restricted traffic is flagged; mark it reviewed.
    b.go(&format!("{base}/t/contoso/connectors"));
    let page = b.text();
    has(&page, "on-prem", "connectors");
    has(&page, word(&w, "relays_unregistered"), "connector flags");
    b.axe("connectors");
    b.click("form[action$='/connectors/on-prem/review'] button");
    has(
        &b.text(),
        word(&w, "done_connector_reviewed"),
        "connector reviewed",
    );

    // Users: bob is restricted; reset his password, then release him.
    b.go(&format!("{base}/t/contoso/users"));
    has(&b.text(), "bob@contoso.example", "users");
    b.axe("users");
    b.click("a[href$='/users/bob@contoso.example']");
    has(
        &b.text(),
        word(&w, "password_none"),
        "bob has no SMTP password yet",
    );
    b.fill("#password", "a new long password for bob");
    b.click("main form button");
    has(&b.text(), word(&w, "password_set"), "password reset");
    b.axe("user");
    b.go(&format!("{base}/t/contoso/users"));
    b.click("form[action$='/users/bob@contoso.example/release'] button");
    has(&b.text(), word(&w, "done_user_released"), "user released");

    // The checklist: attest, see every item done, request release.
    b.go(&format!("{base}/t/contoso"));
    b.click("article.restriction a.button[href*='/restrictions/']");
    let page = b.text();
    has(&page, word(&w, "checklist_title"), "checklist");
    has(&page, word(&w, "check_5"), "checklist item 5");
    b.axe("restriction");
    b.click("form[action$='/attest'] button");
    let page = b.text();
    has(&page, word(&w, "done_attested"), "attested");
    has(
        &page,
        lead(&w, "ev_attested"),
        "the evidence in the page's language",
    );
    let open = b.js("return document.querySelectorAll('ol.checklist li.open').length;");
    assert_eq!(open, 0, "every item done after the fixes: {}", b.text());
    b.screenshot(&format!("{lang}-checklist"));
    b.fill(
        "#note",
        "Locked down the on-premises server; fabrikam.example is ours.",
    );
    b.click("form[action$='/request-release'] button");
    let page = b.text();
    has(
        &page,
        word(&w, "done_release_requested"),
        "release requested",
    );
    has(&page, word(&w, "state_release_requested"), "state shown");
    b.axe("restriction after the request");

    // Alerts, the audit log of what the admin just did, and accounts and access.
    b.go(&format!("{base}/t/contoso/alerts"));
    has(&b.text(), "tenant_restricted_unprovisioned", "alerts");
    b.axe("alerts");
    b.go(&format!("{base}/t/contoso/audit"));
    let page = b.text();
    for action in [
        "domain.add",
        "domain.verify",
        "connector.review",
        "restriction.release",
        "restriction.attest",
        "restriction.request_release",
    ] {
        has(&page, action, "audit log");
    }
    b.axe("audit");
    b.go(&format!("{base}/t/contoso/access"));
    b.fill("#new-email", "auditor@contoso.example");
    b.js("document.querySelector('#new-role').value = 'reader'; return true;");
    b.click("form[action$='/access/accounts'] button");
    let page = b.text();
    has(&page, word(&w, "shown_once"), "a setup link shown once");
    has(&page, "/setup/", "the setup link");
    has(&page, "auditor@contoso.example", "the new account listed");
    b.axe("accounts and access");
    b.click("form.signout button");
    assert!(b.url().ends_with("/sign-in"), "signed out: {}", b.url());

    // An operator sees the request with its evidence and approves it.
    let url = sign_in_as_operator(&mut b, &relay, &w);
    assert!(
        url.ends_with("/support"),
        "an operator lands on the support console: {url}"
    );
    has(&b.text(), "contoso", "tenants list");
    b.axe("support tenants");
    b.go(&format!("{base}/support?filter=restricted"));
    has(&b.text(), "contoso", "restricted filter");
    let near = wait_for(Duration::from_secs(10), || {
        b.go(&format!("{base}/support?filter=near"));
        let page = b.text();
        // The nearest of its counters: 50% suspicious against 10%, or 3 of 3 unregistered.
        (page.contains("contoso")
            && (page.contains("suspicious_share_24h_percent: 50 / 10")
                || page.contains("unregistered_messages_24h: 3 / 3")))
        .then_some(page)
    });
    assert!(near.is_some(), "near-threshold filter: {}", b.text());
    b.go(&format!("{base}/support/audit"));
    has(
        &b.text(),
        "restriction.request_release",
        "the global audit log",
    );
    b.axe("global audit");
    b.go(&format!("{base}/support/releases"));
    let page = b.text();
    has(&page, "contoso", "release queue");
    has(&page, "5.7.750", "release queue");
    has(
        &page,
        "Locked down the on-premises server",
        "the admin's note",
    );
    has(&page, word(&w, "check_1"), "checklist evidence");
    b.axe("release queue");
    b.screenshot(&format!("{lang}-release-queue"));
    b.fill("input[name=note]", "environment secured");
    b.click("form[action$='/approve'] button");
    let page = b.text();
    has(&page, word(&w, "done_approved"), "approved");
    has(&page, lead(&w, "probation_until"), "probation shown");
    b.axe("restriction on probation, as an operator");

    // Limits with the what-if: a lower per-user limit of suspicious mail replayed over the
    // trace shows the day and the message at which it would have restricted bob. (The
    // unregistered allowance would not: fabrikam.example is the tenant's domain now, and the
    // replay judges senders as the relay would today.)
    b.go(&format!("{base}/support/limits/contoso"));
    let page = b.text();
    has(&page, word(&w, "whatif_current"), "limits page");
    // Under the current limits the replay restricts bob where the relay did: at his third
    // suspicious message, the one refused at its end of data (the trace keeps it).
    let current = b.element_text("#whatif-current + p");
    assert!(
        current.contains(" 1 "),
        "the current limits restricted on one day: {current}"
    );
    let table = b.element_text("section.whatif table");
    has(
        &table,
        "5.1.8 bob@contoso.example",
        "the restriction that happened",
    );
    // "at message 3 of the day", without the time that follows.
    let third = word(&w, "whatif_at").replace("{n}", "3");
    let third = third.split(" (").next().unwrap_or_default();
    has(&table, third, "at bob's third message");
    b.axe("limits");
    b.fill("#user_suspicious_per_day", "1");
    b.click("button[value=whatif]");
    let page = b.text();
    has(&page, word(&w, "whatif_new"), "what-if");
    let proposed = b.element_text("#whatif-new + p");
    assert!(
        proposed.contains(" 1 "),
        "restricted on one day: {proposed}"
    );
    let table = b.element_text("section.whatif table");
    has(&table, "5.1.8", "what-if trigger");
    has(&table, "bob@contoso.example", "what-if subject");
    has(
        &table,
        lead(&w, "whatif_at"),
        "what-if says at which message",
    );
    b.axe("what-if");
    b.screenshot(&format!("{lang}-what-if"));
    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    assert!(
        !audit.contains("tenant.limits"),
        "a what-if saves nothing: {audit}"
    );

    // Mail flows again: the next message from the server is delivered.
    let before = rx.messages().len();
    let r = wait_for(Duration::from_secs(10), || {
        let mut c = relay.client();
        c.cmd("EHLO onprem.contoso.example");
        let r = c.transaction(
            "billing@fabrikam.example",
            &["customer@remote.example"],
            CLEAN,
        );
        (r.code == 250).then_some(r)
    });
    assert!(r.is_some(), "mail from the tenant flows after the release");
    let got = rx.wait(before + 1, Duration::from_secs(20));
    assert!(
        got.iter()
            .any(|m| m.rcpts.contains(&"customer@remote.example".to_string())),
        "the next message is delivered"
    );

    let bad: Vec<_> = b.checked.iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(
        bad.is_empty(),
        "axe-core found serious or critical violations: {bad:#?}"
    );
    assert!(
        b.checked.len() >= 15,
        "axe ran on every page visited: {}",
        b.checked.len()
    );
}

#[test]
fn the_seeds_story_in_the_browser_in_english() {
    walk("en");
}

#[test]
fn the_seeds_story_in_the_browser_in_spanish() {
    walk("es");
}

#[test]
fn another_tenants_admin_and_a_reader_cannot_see_or_change_a_tenants_objects() {
    let Some(mut b) = Browser::start("en") else {
        return;
    };
    let w = words("en");
    let dns = Dns::start(vec![]);
    let rx = Receiver::start(false);
    let relay = relay_with(rx.addr, dns.addr);
    let base = format!("http://{}", relay.http);
    for t in ["contoso", "fabrikam"] {
        relay.cli(&["tenant", "add", t]);
    }
    relay.cli(&[
        "connector",
        "add",
        "contoso",
        "on-prem",
        "--ip",
        "127.0.0.1/32",
    ]);
    relay.cli(&["domain", "add", "contoso", "contoso.example"]);

    // Fabrikam's admin: contoso's pages answer "not found", like a tenant that does not exist.
    let out = relay.cli(&[
        "account",
        "create",
        "it@fabrikam.example",
        "--role",
        "admin",
        "--tenant",
        "fabrikam",
    ]);
    let url = set_up_and_sign_in(&mut b, &relay, &w, &setup_path(&out), "it@fabrikam.example");
    assert!(url.ends_with("/t/fabrikam"), "{url}");
    for path in [
        "/t/contoso",
        "/t/contoso/domains",
        "/t/contoso/domains/contoso.example/checks",
        "/t/contoso/connectors",
        "/t/contoso/users",
        "/t/nosuch",
        "/support",
        "/support/releases",
    ] {
        b.go(&format!("{base}{path}"));
        let page = b.text();
        assert!(
            !page.contains("on-prem") && !page.contains("contoso.example"),
            "{path} leaks: {page}"
        );
        let refused = page.contains(word(&w, "not_found_title"))
            || page.contains(word(&w, "forbidden_title"));
        assert!(refused, "{path}: {page}");
    }
    b.axe("not found");
    // A form posted by hand, with the admin's own valid CSRF token, changes nothing.
    let post = |b: &Browser, action: &str, field: &str, value: &str| {
        b.navigate_by(&format!(
            "const csrf = document.querySelector('input[name=csrf]').value; const f = document.createElement('form'); f.method = 'post'; f.action = '{action}'; for (const [k, v] of [['csrf', csrf], ['{field}', '{value}']]) {{ const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }} document.body.appendChild(f); f.submit(); return true;"
        ));
        b.text()
    };
    b.go(&format!("{base}/t/fabrikam"));
    let page = post(&b, "/t/contoso/connectors/on-prem/review", "note", "");
    has(
        &page,
        word(&w, "not_found_title"),
        "posting to another tenant's connector",
    );
    b.go(&format!("{base}/t/fabrikam"));
    let page = post(&b, "/t/contoso/domains", "domain", "stolen.example");
    has(
        &page,
        word(&w, "not_found_title"),
        "adding a domain to another tenant",
    );
    b.go(&format!("{base}/t/fabrikam"));
    let page = post(&b, "/t/fabrikam/connectors/on-prem/review", "note", "");
    assert!(
        !page.contains(word(&w, "done_connector_reviewed")),
        "{page}"
    );

    // Contoso's reader sees contoso's pages, with no forms, and a posted form is refused.
    let out = relay.cli(&[
        "account",
        "create",
        "audit@contoso.example",
        "--role",
        "reader",
        "--tenant",
        "contoso",
    ]);
    set_up_and_sign_in(
        &mut b,
        &relay,
        &w,
        &setup_path(&out),
        "audit@contoso.example",
    );
    b.go(&format!("{base}/t/contoso/connectors"));
    has(&b.text(), "on-prem", "the reader reads");
    assert!(!b.exists("main form"), "no forms for a reader");
    b.axe("connectors as a reader");
    b.go(&format!("{base}/t/contoso/access"));
    assert!(
        !b.exists("main form"),
        "no forms on the access page for a reader"
    );
    let page = post(&b, "/t/contoso/connectors/on-prem/review", "note", "");
    has(&page, word(&w, "readers_cannot_change"), "a reader's post");
    b.go(&format!("{base}/t/contoso/domains"));
    let page = post(&b, "/t/contoso/domains", "domain", "reader.example");
    has(
        &page,
        word(&w, "readers_cannot_change"),
        "a reader adding a domain",
    );
    // The account's own language wins over the tenant's and the browser's.
    b.go(&format!("{base}/account"));
    has(&b.text(), word(&w, "your_account"), "account page");
    b.axe("account");
    b.js("document.querySelector('#language').value = 'es'; return true;");
    b.click("main form button");
    let es = words("es");
    let page = b.text();
    has(&page, word(&es, "language_saved"), "saved, said in Spanish");
    has(&page, word(&es, "your_account"), "the page in Spanish");
    b.js("document.querySelector('#language').value = ''; return true;");
    b.click("main form button");
    has(
        &b.text(),
        word(&w, "your_account"),
        "back to the tenant's English",
    );

    // A post without the session's token is refused too.
    b.go(&format!("{base}/t/contoso"));
    b.js("document.querySelector('input[name=csrf]').value = 'forged'; return true;");
    b.click("form.signout button");
    has(&b.text(), word(&w, "form_expired"), "a forged token");

    // Five wrong passwords lock an account, and the page says for how long; a recovery code
    // is a second factor that works once.
    let out = relay.cli(&[
        "account",
        "create",
        "it2@fabrikam.example",
        "--role",
        "admin",
        "--tenant",
        "fabrikam",
    ]);
    b.forget();
    b.go(&format!("{base}{}", setup_path(&out)));
    let secret = b.element_text("code.secret");
    b.fill("#password", PASSWORD);
    b.fill("#code", &totp_now(&secret));
    b.click("main form button");
    let code = b.element_text("ol.codes li:first-child code");
    b.go(&format!("{base}/sign-in"));
    b.fill("#email", "it2@fabrikam.example");
    b.fill("#password", PASSWORD);
    b.fill("#recovery", &code);
    b.click("main form button");
    assert!(
        b.url().ends_with("/t/fabrikam"),
        "signed in with a recovery code: {}",
        b.url()
    );
    b.forget();
    b.go(&format!("{base}/sign-in"));
    b.fill("#email", "it2@fabrikam.example");
    b.fill("#password", PASSWORD);
    b.fill("#recovery", &code);
    b.click("main form button");
    has(
        &b.text(),
        word(&w, "signin_invalid"),
        "a recovery code works once",
    );
    for _ in 0..4 {
        b.fill("#password", "not the password");
        b.fill("#code", "123456");
        b.click("main form button");
    }
    b.fill("#password", PASSWORD);
    b.fill("#code", &totp_now(&secret));
    b.click("main form button");
    has(&b.text(), lead(&w, "signin_locked"), "locked, and told so");
    b.axe("sign-in, locked");

    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    assert!(
        !audit.contains("connector.review")
            && !audit.contains("stolen.example")
            && !audit.contains("reader.example"),
        "nothing of contoso's changed: {audit}"
    );
    assert!(!relay.cli(&["tenant", "list"]).contains("reader.example"));
    let bad: Vec<_> = b.checked.iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(bad.is_empty(), "axe-core: {bad:#?}");
}

#[test]
fn with_http_tls_the_console_and_the_api_are_served_over_tls_only() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("dir");
    let made = rcgen::generate_simple_self_signed(vec!["relay.test".to_string()]).expect("cert");
    let cert = dir.path().join("http.pem");
    let key = dir.path().join("http.key");
    std::fs::write(&cert, made.cert.pem()).expect("cert");
    std::fs::write(&key, made.key_pair.serialize_pem()).expect("key");
    let relay = Relay::start(&format!(
        "[http]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let get = |path: &str| https_get(relay.http, path);
    let page = get("/sign-in");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(
        lower.contains("set-cookie: rw_form=") && lower.contains("; secure"),
        "{page}"
    );
    assert!(
        lower.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    assert!(lower.contains("frame-ancestors 'none'"), "{page}");
    let doc = get("/api/v1/openapi.json");
    assert!(
        doc.starts_with("HTTP/1.1 200") && doc.contains("\"openapi\""),
        "{doc}"
    );
    // The setup link the command line prints is an https one.
    let out = relay.cli(&["operator", "create", "ops@relay.example"]);
    assert!(out.contains("https://") && out.contains("/setup/"), "{out}");

    // Plain HTTP on the same port gets no page.
    let mut plain = std::net::TcpStream::connect(relay.http).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    plain
        .write_all(b"GET /sign-in HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out);
    assert!(
        !String::from_utf8_lossy(&out).contains("200 OK"),
        "plain HTTP answered"
    );
}

/// Mail stuck in delivery rounds (a next hop that takes connections and never answers) is not
/// waiting for a round, and the queue page says where it is instead of "nothing is waiting".
#[test]
fn the_queue_page_shows_mail_held_in_delivery_rounds() {
    let Some(mut b) = Browser::start("en") else {
        return;
    };
    let w = words("en");
    let relay = crate::queue::contoso_relay_with(crate::queue::tarpit(), "1h", "");
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let reply = c.transaction("alice@contoso.example", &["a@remote.example"], CLEAN);
    assert_eq!(reply.code, 250, "{reply:?}");
    c.cmd("QUIT");
    let base = format!("http://{}", relay.http);
    sign_in_as_operator(&mut b, &relay, &w);
    let page = wait_for(Duration::from_secs(10), || {
        b.go(&format!("{base}/support/queue"));
        let page = b.text();
        page.contains("in a delivery round").then_some(page)
    })
    .expect("the page says the mail is in a round");
    has(&page, "Where the queue waits", "the shape");
    assert!(
        !page.contains(word(&w, "queue_empty")),
        "not called empty: {page}"
    );
    assert!(b.exists("a[href='/support/queue?domain=remote.example']"));
    b.axe("queue in rounds");
}

#[test]
fn an_operator_works_the_queue_and_restricts_a_user_by_hand() {
    let Some(mut b) = Browser::start("en") else {
        return;
    };
    let w = words("en");
    let rx = Receiver::start(false);
    let relay = crate::queue::contoso_relay(&rx, "1h");
    let base = format!("http://{}", relay.http);
    let ids = crate::queue::three_deferred(&relay);
    relay.cli(&[
        "tenant",
        "add",
        "lapsedco",
        "--subscription-ends",
        "2020-01-31",
    ]);
    sign_in_as_operator(&mut b, &relay, &w);

    // The queue: three deferred messages; hold one, purge another.
    let page = wait_for(Duration::from_secs(10), || {
        b.go(&format!("{base}/support/queue?tenant=contoso"));
        let page = b.text();
        ids.iter().all(|id| page.contains(id)).then_some(page)
    })
    .expect("the three deferred messages are listed");
    has(&page, "451", "the last answer");
    // Where it waits: two messages for remote.example, each domain a link to its messages.
    has(&page, "Where the queue waits", "the queue's shape");
    assert!(
        b.exists("a[href='/support/queue?domain=remote.example']"),
        "{page}"
    );
    b.axe("queue");
    b.click(&format!(
        "form[action='/support/queue/{}/hold'] button",
        ids[0]
    ));
    let page = b.text();
    has(&page, word(&w, "done_saved"), "held");
    assert!(
        b.exists(&format!("form[action='/support/queue/{}/release']", ids[0])),
        "a held message offers release"
    );
    b.click(&format!(
        "form[action='/support/queue/{}/purge'] button",
        ids[1]
    ));
    assert!(!b.text().contains(&ids[1]), "purged");
    // Every message the filter shows, now: the one not held is tried again.
    b.go(&format!("{base}/support/queue?tenant=contoso"));
    b.click("form[action='/support/queue/flush'] button");
    let page = b.text();
    has(&page, word(&w, "done_saved"), "flushed");
    assert!(b.url().contains("tenant=contoso"), "{}", b.url());
    let audit = relay.cli(&["audit"]);
    assert!(
        audit.contains("queue.hold") && audit.contains("queue.purge"),
        "{audit}"
    );
    let flush = audit
        .lines()
        .find(|l| l.contains("\"queue.flush\""))
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(flush.contains(r#"\"messages\":1"#), "{flush}");
    // Every message to remote.example held at once, once its retry is over; the page offers
    // that only with something filtered on.
    wait_for(Duration::from_secs(10), || {
        let list = relay.cli(&["queue", "list", "--json"]);
        list.lines()
            .any(|l| l.contains(ids[2].as_str()) && l.contains(r#""attempts":2"#))
            .then_some(())
    })
    .expect("the flushed message was tried again");
    b.go(&format!("{base}/support/queue"));
    assert!(
        !b.exists("form[action='/support/queue/selected/hold']"),
        "no action on the whole queue at one click"
    );
    b.go(&format!("{base}/support/queue?domain=remote.example"));
    b.axe("queue filtered by destination");
    b.click("form[action='/support/queue/selected/hold'] button");
    has(&b.text(), word(&w, "done_saved"), "held all");
    assert!(b.url().contains("domain=remote.example"), "{}", b.url());
    assert!(
        b.exists(&format!("form[action='/support/queue/{}/release']", ids[2])),
        "the message flushed above is held now"
    );
    let audit = relay.cli(&["audit"]);
    let held = audit
        .lines()
        .find(|l| l.contains("\"queue.hold\"") && l.contains("selection"))
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(
        held.contains(r#"\"messages\":1"#),
        "only the one not held yet: {held}"
    );
    // A purge of them all says first what it takes, and waits to be confirmed.
    b.click("form[action='/support/queue/selected/purge'] button");
    let page = b.text();
    has(&page, "Purge 2 waiting message(s)?", "the count to confirm");
    has(&page, "remote.example", "the selection");
    b.axe("confirm a purge of a selection");
    assert!(
        relay.cli(&["queue", "list"]).contains(ids[2].as_str()),
        "nothing purged before it is confirmed"
    );
    b.click("form[action='/support/queue/selected/purge'] button");
    has(&b.text(), word(&w, "done_saved"), "purged all");
    let left = relay.cli(&["queue", "list"]);
    assert!(
        !left.contains(ids[0].as_str()) && !left.contains(ids[2].as_str()),
        "{left}"
    );

    // A tenant from the configuration file: its connector cannot be removed here, and the
    // page says where to change it.
    b.go(&format!("{base}/t/contoso/connectors"));
    b.click("form[action$='/connectors/on-prem/remove'] button");
    let page = b.text();
    has(&page, word(&w, "refused_conflict"), "a refused removal");
    has(&page, "managed by the configuration file", "and why");

    // Tenants whose subscription ended.
    b.go(&format!("{base}/support?filter=lapsed"));
    let page = b.text();
    has(&page, "lapsedco", "lapsed filter");
    has(&page, "2020-01-31", "lapsed filter");
    assert!(
        !page.contains("contoso"),
        "contoso's subscription has not ended: {page}"
    );

    // A user restricted by hand: the relay refuses the user's next mail with 5.1.8.
    b.go(&format!("{base}/t/contoso"));
    b.js("document.querySelector('#restrict-kind').value = 'user'; return true;");
    b.fill("#restrict-name", "alice@contoso.example");
    b.fill("#restrict-note", "a phishing kit was found on her laptop");
    b.click("form[action$='/restrict'] button");
    let page = b.text();
    has(&page, "5.1.8", "the restriction's page");
    has(
        &page,
        "a phishing kit was found on her laptop",
        "the operator's note in the history",
    );
    b.axe("restricted by hand");
    let refused = wait_for(Duration::from_secs(5), || {
        let mut c = relay.client();
        c.cmd("EHLO onprem.contoso.example");
        let r = c.transaction("alice@contoso.example", &["x@remote.example"], CLEAN);
        r.text().starts_with("550 5.1.8").then_some(r)
    });
    assert!(
        refused.is_some(),
        "the running relay enforces it within seconds"
    );
    let bad: Vec<_> = b.checked.iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(bad.is_empty(), "axe-core: {bad:#?}");
}

/// A tenant admin's changes in the console and through the API are one count
/// (`[http] tenant_changes_per_hour`): past it the console says when to try again, and
/// nothing changes.
#[test]
fn a_tenant_admins_changes_in_the_console_count_toward_the_hourly_limit() {
    let Some(mut b) = Browser::start("en") else {
        return;
    };
    let w = words("en");
    let relay = Relay::start("[http]\ntenant_changes_per_hour = 2\n");
    let base = format!("http://{}", relay.http);
    relay.cli(&["tenant", "add", "contoso"]);
    let out = relay.cli(&[
        "account",
        "create",
        "it@contoso.example",
        "--role",
        "admin",
        "--tenant",
        "contoso",
    ]);
    let url = set_up_and_sign_in(&mut b, &relay, &w, &setup_path(&out), "it@contoso.example");
    assert!(url.ends_with("/t/contoso"), "{url}");
    let add = |b: &mut Browser, name: &str| {
        b.go(&format!("{base}/t/contoso/domains"));
        b.fill("#domain", name);
        b.click("main form.card button");
        b.text()
    };
    // The first change in the console, the second through the API with the tenant's token.
    has(
        &add(&mut b, "one.contoso.example"),
        word(&w, "done_domain_added"),
        "the first change",
    );
    let admin = relay.token(&["--name", "a", "--role", "admin", "--tenant", "contoso"]);
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/contoso/domains",
        Some(&admin),
        Some(r#"{"name": "two.contoso.example"}"#),
    );
    assert_eq!(status, 201, "{json}");
    let page = add(&mut b, "three.contoso.example");
    has(&page, lead(&w, "too_many_changes"), "the third change");
    assert!(
        !page.contains(word(&w, "done_domain_added")),
        "nothing added: {page}"
    );
    b.axe("too many changes");
    b.go(&format!("{base}/t/contoso/domains"));
    let page = b.text();
    has(&page, "two.contoso.example", "the API's change is listed");
    assert!(!page.contains("three.contoso.example"), "{page}");
}

/// In a cluster, the queue page through a node that holds none of the mail shows every node's,
/// each message with its node and each node's count; an action on a message another node
/// holds is passed on, and that node does it.
#[test]
fn the_queue_page_of_a_cluster_shows_every_nodes_mail() {
    let Some(db) = crate::cluster::database() else {
        return;
    };
    let Some(mut b) = Browser::start("en") else {
        return;
    };
    let w = words("en");
    let rx = Receiver::start(false);
    let nodes = crate::cluster::cluster(&db.url, &crate::cluster::contoso(rx.addr, "", ""));
    crate::cluster::send_deferred(&[
        (
            &nodes[0],
            ["defer-a@remote.example", "defer-b@other.example"],
        ),
        (
            &nodes[1],
            ["defer-c@remote.example", "defer-d@remote.example"],
        ),
    ]);
    let base = format!("http://{}", nodes[2].http);
    sign_in_as_operator(&mut b, &nodes[2], &w);
    let second = crate::cluster::node_name(&nodes[1]);
    // The counts take in messages in a delivery round; the table lists those waiting that
    // instant (each is retried every second here): look until a message of the second node
    // is listed.
    let find = format!(
        "const row = [...document.querySelectorAll('tbody tr')]\
           .find(r => r.children[1] && r.children[1].textContent.trim() === '{second}');\
         return row ? row.querySelector('th').firstChild.textContent.trim() : null;"
    );
    let (page, id) = wait_for(Duration::from_secs(20), || {
        b.go(&format!("{base}/support/queue"));
        let page = b.text();
        let id = b.js(&find).as_str().map(str::to_string)?;
        page.contains("node-127.0.0.4 0, node-127.0.0.2 2, node-127.0.0.3 2")
            .then_some((page, id))
    })
    .unwrap_or_else(|| panic!("every node's mail on the page: {}", b.text()));
    has(&page, word(&w, "queue_on_nodes"), "each node's count");
    has(&page, word(&w, "queue_node"), "the node column");
    b.axe("cluster queue");
    b.click(&format!("form[action='/support/queue/{id}/hold'] button"));
    has(&b.text(), word(&w, "queue_passed_on_one"), "passed on");
    let held = wait_for(Duration::from_secs(10), || {
        let (_, out) = nodes[1].cli_status(&["queue", "show", &id, "--json"]);
        out.contains("\"held\":true").then_some(())
    });
    assert!(held.is_some(), "{}", nodes[1].cli(&["queue", "list"]));
}
