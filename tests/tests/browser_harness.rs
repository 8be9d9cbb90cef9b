//! The browser-test harness (`suyun_tests::browser`) against the real apiserver: headless
//! Chromium trusts the test CA through its NSS database (a page that loads passed real
//! certificate verification, and a browser trusting another CA gets no page), presents its
//! client certificate without a dialog (南京's certificate sees only 南京's node), sends none
//! when it has none (401), and axe-core finds accessibility violations on a page whose
//! Content-Security-Policy forbids every script of its own.

use std::time::Duration;

use suyun_tests::apiserver::{ServerOptions, TestServer};
use suyun_tests::browser::{Browser, VIEWPORT, assert_accessible, axe, body_text, screenshot, wait_for, wait_for_text};
use thirtyfour::WebDriver;

/// The JSON document a browser shows for a JSON response (Chromium renders it as text in a
/// `<pre>`, whatever its JSON viewer adds around it).
async fn shown_json(driver: &WebDriver) -> serde_json::Value {
    let pre = wait_for(driver, "pre", Duration::from_secs(10)).await.unwrap();
    let text = pre.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("page is not a JSON document ({e}): {text}"))
}

#[tokio::test]
async fn trusted_tls_and_client_certificates_in_a_real_browser() {
    let (server, _publisher) = TestServer::with_sample("browser-harness", ServerOptions::default()).await.unwrap();
    let nodes = format!("https://127.0.0.1:{}/api/v1/nodes", server.addr.port());

    // 南京 (scope 320100) by client certificate: only its own node of the three.
    let nanjing = Browser::start(&server.ca.pem.cert, Some(&server.ca.client("zhang.wei", &["320100"]))).await.unwrap();
    let driver = nanjing.session().await.unwrap();
    driver.goto(nodes.as_str()).await.unwrap();
    let body = shown_json(&driver).await;
    let names: Vec<&str> = body["items"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nanjing"], "{body}");
    assert_eq!(body["items"][0]["displayName"], "南京市", "{body}");
    // Chinese text renders (a CJK font is installed): look at the picture when in doubt.
    let picture = std::fs::read(screenshot(&driver, "browser-harness-nodes").await.unwrap()).unwrap();
    assert!(picture.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let size = |at: usize| u32::from_be_bytes(picture[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), VIEWPORT, "the screenshot shows the whole viewport, nothing else");
    driver.quit().await.unwrap();

    // No client certificate: the apiserver's problem details, 401.
    let anonymous = Browser::start(&server.ca.pem.cert, None).await.unwrap();
    let driver = anonymous.session().await.unwrap();
    driver.goto(nodes.as_str()).await.unwrap();
    let problem = shown_json(&driver).await;
    assert_eq!(problem["status"], 401, "{problem}");
    assert_eq!(problem["title"], "Authentication required", "{problem}");
    driver.quit().await.unwrap();

    // A browser trusting another CA refuses the server's certificate: trust comes from the NSS
    // database, not from ignoring certificate errors.
    let elsewhere = Browser::start(&server.wrong_ca.pem.cert, None).await.unwrap();
    let driver = elsewhere.session().await.unwrap();
    let refused = match driver.goto(nodes.as_str()).await {
        Err(e) => e.to_string(),
        Ok(()) => body_text(&driver).await.unwrap(),
    };
    assert!(refused.contains("ERR_CERT_AUTHORITY_INVALID"), "{refused}");
    driver.quit().await.unwrap();
}

/// `html` as a `data:` URL.
fn data_url(html: &str) -> String {
    let mut url = String::from("data:text/html;charset=utf-8,");
    for byte in html.bytes() {
        if byte.is_ascii_alphanumeric() {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

/// A page with the console's policy (`script-src 'self'`), an inline script the policy blocks
/// and `image`.
fn page(image: &str) -> String {
    format!(
        r#"<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'self'; img-src data:">
        <title>无障碍检查</title></head>
        <body><main><h1>迁移概览</h1>{image}<script>window.inlineScriptRan = true;</script></main></body></html>"#
    )
}

#[tokio::test]
async fn axe_finds_violations_despite_a_strict_content_security_policy() {
    let browser = Browser::start(&suyun_tests::tls::TestCa::new("unused").pem.cert, None).await.unwrap();
    let driver = browser.session().await.unwrap();
    let pixel = "data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==";

    driver.goto(data_url(&page(&format!(r#"<img src="{pixel}">"#))).as_str()).await.unwrap();
    wait_for_text(&driver, "h1", "迁移概览", Duration::from_secs(5)).await.unwrap();
    let missing = wait_for_text(&driver, "h1", "不存在", Duration::from_millis(300)).await.unwrap_err().to_string();
    assert!(missing.contains("迁移概览"), "the error shows what was there: {missing}");
    // Chinese browser: its interface (error pages, form messages) and what it asks pages for.
    let languages = driver.execute("return [navigator.language, navigator.languages]", Vec::new()).await.unwrap();
    assert_eq!(languages.json(), &serde_json::json!(["zh-CN", ["zh-CN", "zh"]]));
    // The policy is in force: the page's own inline script did not run.
    let ran = driver.execute("return window.inlineScriptRan === true", Vec::new()).await.unwrap();
    assert_eq!(ran.json(), false, "the inline script ran: no CSP in force");

    let violations = axe(&driver, "missing-alt").await.unwrap();
    let image_alt = violations.iter().find(|v| v.id == "image-alt").unwrap_or_else(|| panic!("{violations:?}"));
    assert!(image_alt.is_serious(), "{image_alt:?}");
    assert_eq!(image_alt.nodes[0].target, serde_json::json!(["img"]), "{image_alt:?}");
    let failure = assert_accessible(&driver, "missing-alt").await.unwrap_err().to_string();
    assert!(failure.contains("image-alt") && failure.contains("\"img\""), "{failure}");

    // The same page with a text alternative passes (axe is injected again after navigation).
    driver.goto(data_url(&page(&format!(r#"<img src="{pixel}" alt="南京节点">"#))).as_str()).await.unwrap();
    assert_accessible(&driver, "with-alt").await.unwrap();
    driver.quit().await.unwrap();
}
