//! Browser tests: a real headless Chromium driven through WebDriver (the Debian `chromium` and
//! `chromium-driver` packages that `tests/cluster/prereqs` installs), accessibility checks with
//! axe-core, screenshots, and waiting helpers.
//!
//! A [`Browser`] is one chromedriver process with a home directory of its own: the NSS database
//! in `$HOME/.pki/nssdb` that Chromium on Linux reads its trust anchors and client certificates
//! from holds the test CA (trusted for TLS servers) and, when given, one client certificate. No
//! `--ignore-certificate-errors`: a page that loads has passed real certificate verification.
//! Because the NSS database belongs to the home directory, a browser with a client certificate
//! and one without are two [`Browser`]s; each can open several sessions ([`Browser::session`]),
//! every one with a fresh profile.
//!
//! `SUYUN_CHROMEDRIVER` and `SUYUN_CHROMIUM` name other chromedriver and Chromium binaries than
//! the ones on `PATH` (the browser must be Chromium: the NSS database is how it trusts).
//!
//! ```no_run
//! # async fn example(server: &suyun_tests::apiserver::TestServer) -> anyhow::Result<()> {
//! use suyun_tests::browser::{Browser, assert_accessible, screenshot, wait_for_text};
//! let nanjing = Browser::start(&server.ca.pem.cert, Some(&server.ca.client("zhang.wei", &["320100"]))).await?;
//! let driver = nanjing.session().await?;
//! driver.goto(format!("https://127.0.0.1:{}/console/", server.addr.port())).await?;
//! wait_for_text(&driver, "h1", "南京", std::time::Duration::from_secs(10)).await?;
//! assert_accessible(&driver, "overview").await?;
//! screenshot(&driver, "overview").await?;
//! driver.quit().await?;
//! # Ok(())
//! # }
//! ```

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha512};
use thirtyfour::prelude::*;
use thirtyfour::session::http::{Body as HttpBody, HttpClient};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::tls::Pem;

/// The axe-core release the accessibility checks run (from the npm registry, cached in
/// `target/browser/`). axe-core is MPL-2.0: it is only fetched for tests, never committed or
/// shipped.
pub const AXE_VERSION: &str = "4.14.1";

/// SHA-512 of the npm tarball `axe-core-4.14.1.tgz` (the registry's `dist.integrity`, in hex):
/// a changed tarball is refused rather than run.
const AXE_SHA512: &str = "1477dafa598d8d065f273d6af302aa203c02e83131707b7fa648cd41bd3d6b734f\
                          8c22a0dab86ee6a6f64b8afbe804b214d36db85a2826965edfb3a0b9d546b5";

/// The default viewport of a session, in CSS pixels (a common laptop screen).
pub const VIEWPORT: (u32, u32) = (1280, 900);

/// How long a page may take to load before WebDriver's `goto` fails.
const PAGE_LOAD: Duration = Duration::from_secs(20);

/// How long an injected script (axe) may run.
const SCRIPT: Duration = Duration::from_secs(30);

/// How long one WebDriver command may take before the client gives up on chromedriver.
const REQUEST: Duration = Duration::from_secs(60);

/// How long chromedriver may take to listen.
const DRIVER_START: Duration = Duration::from_secs(15);

/// Chromium's switches for every session. Chromedriver adds its own automation switches
/// (`--no-first-run`, `--disable-background-networking`, ...) before these.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    // CI runs as root, where Chromium's sandbox cannot start.
    "--no-sandbox",
    // Containers have a small /dev/shm; Chromium then uses /tmp for shared memory.
    "--disable-dev-shm-usage",
    "--lang=zh-CN",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
    // No keyring daemon here: the basic password store never waits for one.
    "--password-store=basic",
    // Only loopback is reachable: no update checks, reporting or prefetching outside.
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-sync",
    "--no-pings",
    "--dns-prefetch-disable",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
];

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// One chromedriver process with its own home directory (NSS database, profiles, logs), killed
/// with every browser it started when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    url: String,
    home: PathBuf,
    client_certificate: bool,
    sessions: AtomicU64,
}

impl Browser {
    /// Starts chromedriver on a free loopback port with a fresh home directory whose NSS
    /// database trusts `ca_pem` for TLS servers and, when `client` is given, holds that client
    /// certificate and key: every session then presents it to `https://127.0.0.1:*` and
    /// `https://localhost:*` without asking. (A page on any other host that asks for a client
    /// certificate would wait for a dialog that never shows: `goto` fails after 20 s.)
    pub async fn start(ca_pem: &str, client: Option<&Pem>) -> anyhow::Result<Browser> {
        let home = std::env::temp_dir().join(format!(
            "suyun-browser-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&home);
        let nssdb = home.join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).with_context(|| format!("creating {}", nssdb.display()))?;
        // Removes the home directory if anything below fails.
        let mut cleanup = RemoveOnDrop(Some(home.clone()));

        let db = format!("sql:{}", nssdb.display());
        run(Command::new("certutil").args(["-N", "--empty-password", "-d", &db])).await?;
        let ca_file = home.join("ca.crt");
        std::fs::write(&ca_file, ca_pem)?;
        // "C,,": a CA trusted to issue TLS server certificates (nothing for e-mail or code).
        run(Command::new("certutil")
            .args(["-A", "-n", "suyun-test-ca", "-t", "C,,", "-d", &db])
            .arg("-i")
            .arg(&ca_file))
        .await?;
        if let Some(client) = client {
            let cert = home.join("client.crt");
            let key = home.join("client.key");
            let p12 = home.join("client.p12");
            std::fs::write(&cert, &client.cert)?;
            std::fs::write(&key, &client.key)?;
            run(Command::new("openssl")
                .args(["pkcs12", "-export", "-name", "suyun-test-client", "-passout", "pass:"])
                .arg("-in")
                .arg(&cert)
                .arg("-inkey")
                .arg(&key)
                .arg("-out")
                .arg(&p12))
            .await?;
            run(Command::new("pk12util").args(["-W", "", "-d", &db]).arg("-i").arg(&p12)).await?;
            std::fs::remove_file(&key)?;
        }

        let binary = std::env::var("SUYUN_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let mut command = Command::new(&binary);
        command
            .arg("--port=0")
            .arg(format!("--log-path={}", home.join("chromedriver.log").display()))
            // Chromium inherits this environment: its HOME is where the NSS database is.
            .env("HOME", &home)
            .env("LANGUAGE", "zh_CN:zh")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(home.join("chromedriver.stderr"))?)
            .kill_on_drop(true);
        // Its own process group, which the browsers it starts join: dropping the Browser kills
        // them all, even when chromedriver itself is gone.
        command.as_std_mut().process_group(0);
        let mut driver = command.spawn().with_context(|| format!("starting {binary}"))?;
        let stdout = driver.stdout.take().context("chromedriver stdout")?;
        let port = tokio::time::timeout(DRIVER_START, async {
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = String::new();
            while let Some(line) = lines.next_line().await? {
                // "ChromeDriver was started successfully on port 41239."
                if let Some(port) = line.split("started successfully on port ").nth(1) {
                    let port: u16 = port.trim_end_matches('.').trim().parse()?;
                    // Nothing more of interest comes on stdout; keep the pipe drained.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Ok(port);
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            bail!("chromedriver exited before listening:\n{seen}")
        })
        .await
        .with_context(|| format!("chromedriver did not listen within {DRIVER_START:?}"))??;
        cleanup.0 = None;
        Ok(Browser {
            driver,
            url: format!("http://127.0.0.1:{port}"),
            home,
            client_certificate: client.is_some(),
            sessions: AtomicU64::new(0),
        })
    }

    /// A new WebDriver session (one Chromium with a fresh profile) with the default viewport
    /// ([`VIEWPORT`]). End it with `quit().await` (a session dropped without, as in a failing
    /// test, is ended synchronously by thirtyfour, or with the [`Browser`]).
    pub async fn session(&self) -> anyhow::Result<WebDriver> {
        self.session_sized(VIEWPORT.0, VIEWPORT.1).await
    }

    /// A new WebDriver session whose viewport is `width` × `height` CSS pixels (a phone layout,
    /// say).
    pub async fn session_sized(&self, width: u32, height: u32) -> anyhow::Result<WebDriver> {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let profile = self.home.join(format!("profile-{n}"));
        std::fs::create_dir_all(profile.join("Default"))?;
        std::fs::write(profile.join("Default/Preferences"), self.preferences().to_string())?;

        let mut caps = DesiredCapabilities::chrome();
        if let Ok(chromium) = std::env::var("SUYUN_CHROMIUM") {
            caps.set_binary(&chromium)?;
        }
        for arg in CHROMIUM_ARGS {
            caps.add_arg(arg)?;
        }
        caps.add_arg(&format!("--window-size={width},{height}"))?;
        caps.add_arg(&format!("--user-data-dir={}", profile.display()))?;
        let driver = WebDriver::builder(self.url.as_str(), caps)
            .client(Loopback)
            .await
            .with_context(|| format!("starting Chromium through chromedriver; its log:\n{}", self.log_tail()))?;
        // After the session starts: thirtyfour sets its own defaults (60 s) then, over any
        // `timeouts` capability.
        let timeouts = TimeoutConfiguration::new(Some(SCRIPT), Some(PAGE_LOAD), Some(Duration::ZERO));
        let ready = async {
            driver.update_timeouts(timeouts).await?;
            fit_viewport(&driver, width, height).await
        };
        match ready.await {
            Ok(()) => Ok(driver),
            Err(e) => {
                let _ = driver.quit().await;
                Err(e)
            }
        }
    }

    /// The profile's preferences, written before Chromium starts: Accept-Language, and the
    /// automatic choice of the client certificate.
    fn preferences(&self) -> serde_json::Value {
        let mut prefs = json!({ "intl": { "accept_languages": "zh-CN,zh" } });
        if self.client_certificate {
            // Chromium asks which client certificate to present through a dialog, which a headless
            // browser cannot show: the page never loads (and the `--auto-ssl-client-auth` switch
            // does nothing in Chromium 156). The content setting behind the machine-wide
            // AutoSelectCertificateForUrls policy, set in this profile only, picks the first
            // certificate matching the filter instead; the empty filter matches any, and this
            // home's NSS database holds exactly one.
            let setting = json!({ "setting": { "filters": [{}] } });
            prefs["profile"] = json!({
                "content_settings": { "exceptions": { "auto_select_certificate": {
                    "https://127.0.0.1:*,*": setting,
                    "https://localhost:*,*": setting,
                } } }
            });
        }
        prefs
    }

    /// The chromedriver endpoint (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The home directory of chromedriver and its browsers (NSS database, profiles, logs).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The last lines of chromedriver's log (for error messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.home.join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver's /shutdown closes every browser it started, then exits. A plain
        // blocking request: drop runs outside any async context that could be awaited.
        if let Some(address) = self.url.strip_prefix("http://")
            && let Ok(mut stream) = TcpStream::connect(address)
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(stream, "GET /shutdown HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            let _ = stream.read_to_end(&mut Vec::new());
        }
        if let Some(pid) = self.driver.id() {
            // Whatever is left of the process group (chromedriver, Chromium and its helpers).
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
        let _ = self.driver.start_kill();
        let _ = self.driver.try_wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Headless Chromium still counts a window frame (tab strip, address bar) in `--window-size`:
/// grows the window so that the viewport, which pages lay out in and screenshots show, is
/// `width` × `height`.
async fn fit_viewport(driver: &WebDriver, width: u32, height: u32) -> anyhow::Result<()> {
    let inner = driver.execute("return [window.innerWidth, window.innerHeight]", Vec::new()).await?;
    let (inner_width, inner_height): (u32, u32) = inner.convert()?;
    if (inner_width, inner_height) != (width, height) {
        let grow = |want: u32, got: u32| (2 * i64::from(want) - i64::from(got)).clamp(1, 10_000) as u32;
        driver.set_window_rect(0, 0, grow(width, inner_width), grow(height, inner_height)).await?;
        let inner = driver.execute("return [window.innerWidth, window.innerHeight]", Vec::new()).await?;
        let viewport: (u32, u32) = inner.convert()?;
        ensure!(viewport == (width, height), "viewport is {viewport:?}, not {:?}", (width, height));
    }
    Ok(())
}

/// thirtyfour's HTTP client: one HTTP/1.1 connection to chromedriver (on loopback) per command,
/// answered within [`REQUEST`].
///
/// Not reqwest's pooled client: a pooled connection is driven by the runtime that opened it, and
/// thirtyfour ends a session dropped without `quit` (a test that failed half-way) by sending
/// DELETE from a runtime of its own while it blocks the thread it was dropped on. On a
/// `#[tokio::test]` (one thread) the pooled connection then never moves, and every failing test
/// hung for the whole request timeout.
#[derive(Debug, Clone, Copy)]
struct Loopback;

#[async_trait::async_trait]
impl HttpClient for Loopback {
    async fn send(&self, request: http::Request<HttpBody<'_>>) -> WebDriverResult<http::Response<Bytes>> {
        let what = format!("{} {}", request.method(), request.uri());
        tokio::time::timeout(REQUEST, send_once(request))
            .await
            .map_err(|_| WebDriverError::Timeout(format!("chromedriver did not answer {what} within {REQUEST:?}")))?
    }

    async fn new(&self) -> Arc<dyn HttpClient> {
        Arc::new(Loopback)
    }
}

async fn send_once(request: http::Request<HttpBody<'_>>) -> WebDriverResult<http::Response<Bytes>> {
    let failed = |e: &dyn std::fmt::Display| WebDriverError::RequestFailed(e.to_string());
    let (mut parts, body) = request.into_parts();
    let body = match body {
        HttpBody::Empty => Bytes::new(),
        HttpBody::Json(json) => Bytes::from(serde_json::to_vec(json)?),
    };
    let authority = parts.uri.authority().ok_or_else(|| failed(&format!("no host in {}", parts.uri)))?.clone();
    parts.headers.insert(http::header::HOST, authority.as_str().parse().map_err(|e| failed(&e))?);
    // Origin form (`/session/...`) on the connection to the host itself.
    parts.uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|e| failed(&e))?;
    let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
    tokio::spawn(connection);
    let response =
        sender.send_request(http::Request::from_parts(parts, Full::new(body))).await.map_err(|e| failed(&e))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| failed(&e))?.to_bytes();
    Ok(http::Response::from_parts(parts, body))
}

/// Removes a directory when dropped, unless disarmed (set to `None`).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs `command` to completion; an error carries its output.
async fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output().await.with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// One rule an axe run found violated, with the elements that violate it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// The rule (`image-alt`, `color-contrast`, ...).
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    /// What the rule asks for, in one line.
    pub help: String,
    /// Deque's page about the rule.
    pub help_url: String,
    /// The violating elements.
    pub nodes: Vec<ViolationNode>,
}

/// An element that violates a rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViolationNode {
    /// CSS selectors that find the element (nested arrays for iframes and shadow roots).
    pub target: serde_json::Value,
    /// The element's opening HTML.
    pub html: String,
    /// What is wrong with it.
    pub failure_summary: Option<String>,
}

impl Violation {
    /// Whether the violation is `serious` or `critical`.
    pub fn is_serious(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

/// The axe-core script (`axe.min.js`), fetched once with `npm pack` into `target/browser/` and
/// checked against its pinned SHA-512; later runs read the cached file and need no network.
pub async fn axe_source() -> anyhow::Result<&'static str> {
    static SOURCE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    SOURCE.get_or_try_init(fetch_axe).await.map(String::as_str)
}

async fn fetch_axe() -> anyhow::Result<String> {
    let dir = crate::repo_root().join("target/browser");
    let cached = dir.join(format!("axe-core-{AXE_VERSION}.min.js"));
    if let Ok(source) = tokio::fs::read_to_string(&cached).await {
        return Ok(source);
    }
    // A directory of this process's own: test binaries running at once each fetch, and the
    // rename at the end makes the cached file appear whole.
    let staging = dir.join(format!(".axe-{}-{}", std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&staging)?;
    let _cleanup = RemoveOnDrop(Some(staging.clone()));
    run(Command::new("npm")
        .args(["pack", &format!("axe-core@{AXE_VERSION}"), "--silent", "--ignore-scripts", "--pack-destination", "."])
        .current_dir(&staging))
    .await
    .context("fetching axe-core from the npm registry (tests/cluster/prereqs installs npm)")?;
    let tarball = staging.join(format!("axe-core-{AXE_VERSION}.tgz"));
    let sha512 = hex::encode(Sha512::digest(std::fs::read(&tarball)?));
    ensure!(sha512 == AXE_SHA512, "{} has SHA-512 {sha512}, expected {AXE_SHA512}", tarball.display());
    run(Command::new("tar").arg("-xzf").arg(&tarball).arg("package/axe.min.js").current_dir(&staging)).await?;
    std::fs::rename(staging.join("package/axe.min.js"), &cached)?;
    Ok(tokio::fs::read_to_string(&cached).await?)
}

/// Runs axe-core on the page `driver` shows and returns every rule it violates. axe is
/// injected through WebDriver's script execution, which the page's Content-Security-Policy
/// (`script-src 'self'`) does not apply to. `page` names the page in errors.
pub async fn axe(driver: &WebDriver, page: &str) -> anyhow::Result<Vec<Violation>> {
    let loaded = driver.execute("return typeof window.axe", Vec::new()).await?;
    if loaded.json() != "object" {
        let injected =
            driver.execute(format!("{}\n;return typeof window.axe;", axe_source().await?), Vec::new()).await?;
        ensure!(injected.json() == "object", "axe-core did not load into page {page}: {}", injected.json());
    }
    let result = driver
        .execute_async(
            r#"
            const done = arguments[arguments.length - 1];
            window.axe.run(document, { resultTypes: ["violations"] }).then(
                (results) => done({ violations: results.violations.map((v) => ({
                    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                    nodes: v.nodes.map((n) => ({ target: n.target, html: n.html, failureSummary: n.failureSummary })),
                })) }),
                (error) => done({ error: String(error) }),
            );
            "#,
            Vec::new(),
        )
        .await
        .with_context(|| format!("running axe-core on page {page}"))?;
    let value = result.json();
    if let Some(error) = value.get("error") {
        bail!("axe-core failed on page {page}: {error}");
    }
    serde_json::from_value(value["violations"].clone()).with_context(|| format!("axe-core's answer on page {page}"))
}

/// Fails, listing each of them with the elements concerned, when axe-core finds a `serious` or
/// `critical` violation on the page `driver` shows (`page` names it in the message).
pub async fn assert_accessible(driver: &WebDriver, page: &str) -> anyhow::Result<()> {
    let serious: Vec<Violation> = axe(driver, page).await?.into_iter().filter(Violation::is_serious).collect();
    if serious.is_empty() {
        return Ok(());
    }
    bail!("page {page}: {} serious or critical accessibility violations\n{}", serious.len(), describe(&serious))
}

/// Violations as text: one paragraph per rule, one line per element.
pub fn describe(violations: &[Violation]) -> String {
    let mut text = String::new();
    for v in violations {
        let _ = writeln!(text, "- {} ({}): {} <{}>", v.id, v.impact.as_deref().unwrap_or("?"), v.help, v.help_url);
        for node in &v.nodes {
            let _ = writeln!(text, "    {}  {}", node.target, node.html);
            if let Some(summary) = &node.failure_summary {
                for line in summary.lines() {
                    let _ = writeln!(text, "      {line}");
                }
            }
        }
    }
    text
}

/// Saves a screenshot of what `driver` shows to `target/console-screenshots/<name>.png` and
/// returns its path.
pub async fn screenshot(driver: &WebDriver, name: &str) -> anyhow::Result<PathBuf> {
    let dir = crate::repo_root().join("target/console-screenshots");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    let png = driver.screenshot_as_png().await.with_context(|| format!("screenshot {name}"))?;
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The text of the page's `<body>` as rendered (`innerText`).
pub async fn body_text(driver: &WebDriver) -> anyhow::Result<String> {
    let text = driver.execute("return document.body ? document.body.innerText : ''", Vec::new()).await?;
    Ok(text.json().as_str().unwrap_or_default().to_owned())
}

/// Waits until an element matching the CSS selector `css` exists, polling every 100 ms for at
/// most `timeout`; returns the first one.
pub async fn wait_for(driver: &WebDriver, css: &str, timeout: Duration) -> anyhow::Result<WebElement> {
    wait_for_text(driver, css, "", timeout).await
}

/// Waits until an element matching the CSS selector `css` has text (as rendered) containing
/// `needle`, polling every 100 ms for at most `timeout`; returns that element. The error lists
/// what the matching elements showed instead.
pub async fn wait_for_text(
    driver: &WebDriver,
    css: &str,
    needle: &str,
    timeout: Duration,
) -> anyhow::Result<WebElement> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut seen = Vec::new();
        let found = driver.find_all(By::Css(css)).await;
        // Elements can go stale between finding and reading them (the page re-rendered): they
        // count as not seen this round.
        for element in found.as_deref().unwrap_or_default() {
            if let Ok(text) = element.text().await {
                if text.contains(needle) {
                    return Ok(element.clone());
                }
                seen.push(text);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let url = driver.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let shown: Vec<String> = seen.iter().map(|t| format!("{:?}", truncate(t, 200))).collect();
            let error = found.err().map(|e| format!(" (finding them failed: {e})")).unwrap_or_default();
            bail!(
                "after {timeout:?} no element matching `{css}` on {url} has text containing {needle:?}; {} matched{}{}{error}",
                seen.len(),
                if seen.is_empty() { "" } else { ": " },
                shown.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
