//! The web console in a real browser (headless Chromium through WebDriver), against the real
//! apiserver, a status store of the test's own (an etcd it can stop) and the operator moving a
//! Simulated wave:
//!
//! * a 南京 operator logs in with a token and sees only 南京's nodes, tenants and systems;
//! * it approves a waiting cutover (confirmation page, CSRF token) and watches the system reach
//!   Completed without reloading the page;
//! * a 苏州 operator who types the URL of a 南京 system gets the same "not found" page as for a
//!   system that does not exist;
//! * a read-only identity sees no approve button, and its forged POST (with a valid CSRF token
//!   of its own session) is refused;
//! * the stale banner appears, with a time, when the status store is stopped;
//! * a session with a client certificate in the browser needs no login;
//! * every page passes axe-core with no serious or critical violation, at 1280 px; the system
//!   list fits a tablet (820 px) without horizontal scrolling;
//! * screenshots of the main pages go to `target/console-screenshots/` (docs/console.md).
//!
//! One test, because each part needs the same expensive set-up (operator, store, wave).

use std::time::Duration;

use kube::Client;
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Tenant};
use suyun_tests::apiserver::TestServer;
use suyun_tests::browser::{Browser, assert_accessible, body_text, screenshot, wait_for, wait_for_text};
use suyun_tests::etcd::{EtcdProcess, unique_prefix};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, install_crds};
use thirtyfour::prelude::*;

const NANJING_TOKEN: &str = "console-nanjing-0123456789abcdef";
const NANJING_READER: &str = "console-nanjing-reader-0123456789";
const SUZHOU_TOKEN: &str = "console-suzhou-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(60);

/// The province, 南京 and 苏州 (display names in Chinese), a tenant each, and a Simulated wave
/// whose cutovers need an approval: two 南京 systems (one approved here, one left waiting) and
/// one 苏州 system.
async fn province(client: &Client) {
    let node = |name: &str, tier: &str, code: &str, display: &str| {
        fixtures::cloud_node(name, tier, code, 400, 4)
            .replace(&format!("displayName: {name}"), &format!("displayName: {display}"))
    };
    apply::<CloudNode>(client, &node("jiangsu", "Provincial", "320000", "江苏省政务云主节点")).await;
    apply::<CloudNode>(client, &node("nanjing", "City", "320100", "南京市骨干节点")).await;
    apply::<CloudNode>(client, &node("suzhou", "City", "320500", "苏州市骨干节点")).await;
    apply::<Tenant>(client, &fixtures::tenant("nanjing-data", "City", "320100", "nanjing", 10)).await;
    apply::<Tenant>(client, &fixtures::tenant("suzhou-data", "City", "320500", "suzhou", 10)).await;
    apply::<MigrationWave>(
        client,
        &fixtures::wave("w", "  executor: Simulated\n  timeCompression: 3600\n  approval: {required: true}\n"),
    )
    .await;
    for namespace in ["nanjing-data", "suzhou-data"] {
        eventually(WAIT, || async {
            Ok(kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get(namespace).await?)
        })
        .await
        .unwrap();
    }
    for (namespace, id) in
        [("nanjing-data", "JS-320100-0001"), ("nanjing-data", "JS-320100-0002"), ("suzhou-data", "JS-320500-0001")]
    {
        apply::<GovSystem>(client, &fixtures::system(namespace, id, "w", 4, "")).await;
    }
}

/// Logs in with `token` on a fresh session of `browser`; checks the login page first.
async fn log_in(browser: &Browser, server: &TestServer, token: &str) -> WebDriver {
    let driver = browser.session().await.unwrap();
    driver.goto(&format!("{}/console/", base(server))).await.unwrap();
    // Without a session, the console sends the browser to its login page.
    wait_for(&driver, "input#token", WAIT).await.unwrap();
    driver.find(By::Css("input#token")).await.unwrap().send_keys(token).await.unwrap();
    driver.find(By::Css("form.login button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_for(&driver, "#identity", WAIT).await.unwrap();
    driver
}

fn base(server: &TestServer) -> String {
    format!("https://127.0.0.1:{}", server.addr.port())
}

async fn open(driver: &WebDriver, server: &TestServer, path: &str) {
    driver.goto(&format!("{}{path}", base(server))).await.unwrap();
}

/// Opens `path`, checks it with axe-core, and saves a screenshot as `name`.
async fn visit(driver: &WebDriver, server: &TestServer, path: &str, name: &str) -> String {
    open(driver, server, path).await;
    wait_for(driver, "main#content", WAIT).await.unwrap();
    assert_accessible(driver, path).await.unwrap_or_else(|e| panic!("{e:#}"));
    screenshot(driver, name).await.unwrap();
    body_text(driver).await.unwrap()
}

/// The status of a POST of the approval form of `id`, sent by the page's own script with the
/// CSRF token that `csrf` (JavaScript) evaluates to.
async fn post_approval(driver: &WebDriver, id: &str, csrf: &str) -> serde_json::Value {
    let script = format!(
        r#"const done = arguments[arguments.length - 1];
           fetch('/console/systems/{id}/approve', {{method: 'POST', redirect: 'manual',
                 body: new URLSearchParams({{csrf: {csrf}, reason: 'forged'}})}})
             .then(r => done(r.status), e => done(String(e)));"#
    );
    driver.execute_async(&script, Vec::new()).await.unwrap().json().clone()
}

#[tokio::test]
async fn city_operators_use_the_console_in_a_real_browser() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let client = cluster().client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let mut store = EtcdProcess::start("console").await.unwrap();
    let prefix = unique_prefix("console");
    let endpoints = format!("--store-endpoints={}", store.endpoint());
    let store_prefix = format!("--store-prefix={prefix}");
    let _operator = OperatorProcess::start(
        cluster(),
        "console",
        &["--lease-name=suyun-console", "--debounce-ms=100", &endpoints, &store_prefix],
    )
    .unwrap();
    let server = TestServer::start(&store.endpoint(), &prefix, 300).await.unwrap();
    server.write_tokens(&[
        (NANJING_TOKEN, "wang.fang", "320100", false),
        (NANJING_READER, "auditor.li", "320100", true),
        (SUZHOU_TOKEN, "chen.jing", "320500", false),
    ]);
    province(&client).await;
    let api = server.with_certificate("probe", &["province"]);
    eventually(Duration::from_secs(90), || async {
        for id in ["JS-320100-0001", "JS-320100-0002"] {
            let reply = api.get(&format!("/api/v1/systems/{id}")).await?;
            let phase = reply.json()["item"]["phase"].clone();
            anyhow::ensure!(phase == "AwaitingCutover", "{id}: {phase}");
        }
        Ok(())
    })
    .await
    .unwrap();

    let browser = Browser::start(&server.ca.pem.cert, None).await.unwrap();

    // 南京's operator: the login page passes axe too.
    let nanjing = browser.session().await.unwrap();
    open(&nanjing, &server, "/console/systems").await;
    wait_for(&nanjing, "input#token", WAIT).await.unwrap();
    assert_accessible(&nanjing, "/console/login").await.unwrap_or_else(|e| panic!("{e:#}"));
    screenshot(&nanjing, "login").await.unwrap();
    nanjing.find(By::Css("input#token")).await.unwrap().send_keys(NANJING_TOKEN).await.unwrap();
    nanjing.find(By::Css("form.login button[type=submit]")).await.unwrap().click().await.unwrap();
    if let Err(e) = wait_for_text(&nanjing, "#identity", "wang.fang", Duration::from_secs(5)).await {
        panic!("{e:#}\n{}", body_text(&nanjing).await.unwrap_or_default());
    }
    let cookies = nanjing.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name == "__Host-suyun-session").expect("a session cookie");
    assert_eq!(session.http_only, Some(true), "{session:?}");
    assert_eq!(session.secure, Some(true), "{session:?}");
    assert!(format!("{:?}", session.same_site).contains("Strict"), "{session:?}");

    // Only 南京's records, on every page.
    let overview = visit(&nanjing, &server, "/console/", "overview").await;
    assert!(overview.contains("南京市骨干节点"), "{overview}");
    let awaiting = nanjing.find(By::Css("#awaiting-count")).await.unwrap().text().await.unwrap();
    assert_eq!(awaiting, "2", "both 南京 systems wait for an approval");
    let pages = [
        ("/console/systems", "systems"),
        ("/console/nodes", "nodes"),
        ("/console/tenants", "tenants"),
        ("/console/waves", "waves"),
    ];
    for (path, name) in pages {
        let text = visit(&nanjing, &server, path, name).await;
        for foreign in ["苏州", "suzhou", "JS-320500", "江苏省政务云主节点", "jiangsu"] {
            assert!(!text.contains(foreign), "{path} shows {foreign:?} to 南京:\n{text}");
        }
    }
    let systems = visit(&nanjing, &server, "/console/systems?phase=AwaitingCutover", "systems-filtered").await;
    assert!(systems.contains("JS-320100-0001") && systems.contains("JS-320100-0002"), "{systems}");
    assert!(overview.contains("等待我审批的割接"), "{overview}");

    // Approve JS-320100-0001 (with a reason), confirm, and watch it complete without a reload.
    visit(&nanjing, &server, "/console/systems/JS-320100-0001", "system").await;
    nanjing.find(By::Css("input#reason")).await.unwrap().send_keys("CHG-2026-1130").await.unwrap();
    nanjing.find(By::Css("button#approve")).await.unwrap().click().await.unwrap();
    wait_for(&nanjing, "button#confirm", WAIT).await.unwrap();
    assert_accessible(&nanjing, "confirm").await.unwrap_or_else(|e| panic!("{e:#}"));
    screenshot(&nanjing, "confirm").await.unwrap();
    assert!(body_text(&nanjing).await.unwrap().contains("CHG-2026-1130"));
    nanjing.find(By::Css("button#confirm")).await.unwrap().click().await.unwrap();
    wait_for_text(&nanjing, "#done", "已批准割接", WAIT).await.unwrap();
    // A mark in the page's JavaScript state: a reload would lose it.
    nanjing.execute("window.suyunNoReload = true;", Vec::new()).await.unwrap();
    eventually(Duration::from_secs(90), || async {
        let phase = nanjing.find(By::Css("#phase")).await?.attr("data-phase").await?.unwrap_or_default();
        anyhow::ensure!(phase == "Completed", "phase {phase}");
        Ok(())
    })
    .await
    .unwrap();
    let kept = nanjing.execute("return window.suyunNoReload === true", Vec::new()).await.unwrap();
    assert_eq!(kept.json(), &json!(true), "the page was reloaded instead of updated");
    let history = wait_for_text(&nanjing, "#history", "wang.fang", WAIT).await.unwrap().text().await.unwrap();
    assert!(history.contains("CHG-2026-1130"), "{history}");
    screenshot(&nanjing, "system-completed").await.unwrap();
    // The other system still waits: a writer sees its approve button.
    open(&nanjing, &server, "/console/systems/JS-320100-0002").await;
    wait_for(&nanjing, "button#approve", WAIT).await.unwrap();
    // A POST without this session's CSRF token is refused, and nothing is recorded.
    assert_eq!(post_approval(&nanjing, "JS-320100-0002", "'not-the-token'").await, json!(403));
    let history = api.get("/api/v1/systems/JS-320100-0002/history").await.unwrap().json();
    assert!(history["item"]["approval"].is_null(), "an approval without the CSRF token was recorded: {history}");

    // English, one click away, back on the same page.
    nanjing.find(By::Css("#lang-switch")).await.unwrap().click().await.unwrap();
    wait_for_text(&nanjing, "h2#h-approval", "Cutover approval", WAIT).await.unwrap();
    assert!(nanjing.current_url().await.unwrap().path().ends_with("/console/systems/JS-320100-0002"));
    nanjing.find(By::Css("#lang-switch")).await.unwrap().click().await.unwrap();
    wait_for_text(&nanjing, "h2#h-approval", "割接审批", WAIT).await.unwrap();
    // A tablet: the system list fits without scrolling sideways.
    let tablet = browser.session_sized(820, 1180).await.unwrap();
    tablet.goto(&format!("{}/console/login", base(&server))).await.unwrap();
    tablet.find(By::Css("input#token")).await.unwrap().send_keys(NANJING_TOKEN).await.unwrap();
    tablet.find(By::Css("form.login button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_for(&tablet, "#identity", WAIT).await.unwrap();
    open(&tablet, &server, "/console/systems").await;
    wait_for(&tablet, "table#systems", WAIT).await.unwrap();
    let fits = tablet.execute("return document.documentElement.scrollWidth <= window.innerWidth", Vec::new()).await;
    assert_eq!(fits.unwrap().json(), &json!(true), "the system list scrolls sideways on a tablet");
    screenshot(&tablet, "systems-tablet").await.unwrap();
    tablet.quit().await.unwrap();

    // 苏州's operator types the URL of a 南京 system: the same page as a missing system.
    let suzhou = log_in(&browser, &server, SUZHOU_TOKEN).await;
    open(&suzhou, &server, "/console/systems/JS-320100-0002").await;
    let foreign = body_text(&suzhou).await.unwrap();
    open(&suzhou, &server, "/console/systems/JS-320100-9999").await;
    let missing = body_text(&suzhou).await.unwrap();
    assert!(foreign.contains("未找到"), "{foreign}");
    assert_eq!(foreign.replace("JS-320100-0002", "JS-320100-9999"), missing);
    assert_accessible(&suzhou, "not found").await.unwrap_or_else(|e| panic!("{e:#}"));
    // Its token is withdrawn from the token file: the session ends with it.
    server
        .write_tokens(&[(NANJING_TOKEN, "wang.fang", "320100", false), (NANJING_READER, "auditor.li", "320100", true)]);
    eventually(WAIT, || async {
        open(&suzhou, &server, "/console/systems").await;
        anyhow::ensure!(suzhou.find(By::Css("input#token")).await.is_ok(), "still signed in");
        Ok(())
    })
    .await
    .unwrap();
    suzhou.quit().await.unwrap();

    // A read-only 南京 identity: no approve button; a forged POST with its own valid CSRF
    // token is refused all the same.
    let reader = log_in(&browser, &server, NANJING_READER).await;
    let text = visit(&reader, &server, "/console/systems/JS-320100-0002", "system-read-only").await;
    assert!(text.contains("只读"), "{text}");
    assert!(reader.find(By::Css("button#approve")).await.is_err(), "a read-only identity sees the approve button");
    let forged = post_approval(&reader, "JS-320100-0002", "document.querySelector('input[name=csrf]').value").await;
    assert_eq!(forged, json!(403), "the forged approval was not refused");
    let waiting = api.get("/api/v1/systems/JS-320100-0002/history").await.unwrap().json();
    assert!(waiting["item"]["approval"].is_null(), "the forged approval was recorded: {waiting}");

    // Logout ends the session: its cookie no longer opens a page.
    reader.find(By::Css("form[action='/console/logout'] button")).await.unwrap().click().await.unwrap();
    wait_for(&reader, "input#token", WAIT).await.unwrap();
    open(&reader, &server, "/console/").await;
    wait_for(&reader, "input#token", WAIT).await.unwrap();
    reader.quit().await.unwrap();

    // A client certificate in the browser (a USB key's, here from the test CA): no login.
    let with_key =
        Browser::start(&server.ca.pem.cert, Some(&server.ca.client("zhang.wei", &["320100"]))).await.unwrap();
    let key_session = with_key.session().await.unwrap();
    let text = visit(&key_session, &server, "/console/systems", "systems-certificate").await;
    assert!(text.contains("zhang.wei") && text.contains("JS-320100-0001") && !text.contains("JS-320500"), "{text}");
    // The certificate got a session (for its CSRF token); a second browser profile with the
    // same certificate gets the same one, not another record in the store.
    let cookie = |driver: WebDriver| async move {
        let cookies = driver.get_all_cookies().await.unwrap();
        let value = cookies.iter().find(|c| c.name == "__Host-suyun-session").map(|c| c.value.clone());
        driver.quit().await.unwrap();
        value.expect("a session cookie")
    };
    let second = with_key.session().await.unwrap();
    open(&second, &server, "/console/").await;
    wait_for_text(&second, "#identity", "zhang.wei", WAIT).await.unwrap();
    assert_eq!(cookie(key_session).await, cookie(second).await);

    // The status store stops: the open page shows the stale banner, with a time, by itself.
    open(&nanjing, &server, "/console/").await;
    wait_for(&nanjing, "#content", WAIT).await.unwrap();
    let banner = nanjing.find(By::Css("#stale")).await.unwrap();
    assert!(!banner.is_displayed().await.unwrap(), "a stale banner while the store is up");
    store.kill();
    // Hidden text reads as empty: this waits for the banner to show.
    let banner = wait_for_text(&nanjing, "#stale", "数据停留在", WAIT).await.unwrap();
    assert!(banner.is_displayed().await.unwrap());
    let since = nanjing.find(By::Css("#stale-since")).await.unwrap().text().await.unwrap();
    assert!(since.len() >= 16 && since.starts_with("20"), "the banner says since when: {since:?}");
    screenshot(&nanjing, "stale").await.unwrap();
    nanjing.quit().await.unwrap();
}
