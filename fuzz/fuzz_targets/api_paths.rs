//! The REST API's request parsing: arbitrary method, path (known segments, raw text and
//! percent-encoded bytes), query, headers, body and caller, sent through the real router
//! (`suyun_apiserver::router`) over a small two-city read-model. Asserts that nothing panics,
//! that no request is answered 500, and that every error (4xx/5xx) of the API is
//! `application/problem+json` (the web console's, under `/console`, are HTML pages).
//!
//! The router reads its index only once the status store has been read (before that every API
//! route answers 503), so the harness needs an etcd: it reads `ETCD_ENDPOINTS` (the test control
//! plane's env file, which `fuzz/run` sources), syncs from an empty prefix of its own, then puts
//! the records into the index directly. Approvals are real etcd writes under that prefix.

#![no_main]

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request, header};
use http_body_util::BodyExt;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use suyun_apiserver::AppState;
use suyun_apiserver::api::ROUTES;
use suyun_apiserver::auth::{Identity, Method as AuthMethod, Scope, TokenStore};
use suyun_apiserver::config::EtcdConfig;
use suyun_apiserver::problem::PROBLEM_JSON;
use suyun_apiserver::server::PeerCertificate;
use suyun_store::readmodel::{
    ApprovalState, JournalEntry, Keys, NodeRecord, ResourceAmounts, SystemRecord, TenantRecord, Utilization, WaveRecord,
};
use tower::ServiceExt;

/// Set to any value to stop asserting that errors are `application/problem+json` (for runs
/// against a build where some are known not to be; the other assertions stay).
const ALLOW_NON_PROBLEM_ERRORS: &str = "SUYUN_FUZZ_ALLOW_NON_PROBLEM_ERRORS";

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Router,
    require_problem_json: bool,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let Ok(endpoints) = std::env::var("ETCD_ENDPOINTS") else {
            eprintln!("api_paths needs an etcd: set ETCD_ENDPOINTS (fuzz/run sources the test control plane's env)");
            std::process::exit(2);
        };
        let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let prefix = format!("/suyun-fuzz-{}-{}/", std::process::id(), now_nanos());
        let state = AppState::new(Keys::new(&prefix), TokenStore::empty());
        runtime.block_on(async {
            let mut etcd = EtcdConfig::new(endpoints, &prefix);
            etcd.probe_ms = 1000;
            let _sync = state.spawn_sync(etcd);
            for _ in 0..200 {
                if state.health.loaded() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(state.health.loaded(), "the status store was not read within 10 s");
        });
        {
            let mut index = state.index.write().expect("index lock");
            for (revision, (key, value)) in records(&state.keys).into_iter().enumerate() {
                index.put(&state.keys, &key, &value, revision as i64 + 1);
            }
        }
        Harness {
            runtime,
            app: suyun_apiserver::router(state),
            require_problem_json: std::env::var_os(ALLOW_NON_PROBLEM_ERRORS).is_none(),
        }
    })
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// Two cities (南京 320100, 苏州 320500 with a county 320583) and the province node.
fn records(keys: &Keys) -> Vec<(String, Vec<u8>)> {
    let mut records = Vec::new();
    for (node, tier, region) in
        [("jiangsu", "Province", "320000"), ("nanjing", "City", "320100"), ("suzhou", "City", "320500")]
    {
        let allocatable = ResourceAmounts { cpu_millis: 64_000, memory_bytes: 1 << 38, storage_bytes: 1 << 42, gpu: 2 };
        let allocated = ResourceAmounts { cpu_millis: 1000, ..Default::default() };
        let record = NodeRecord {
            name: node.into(),
            display_name: node.into(),
            tier: tier.into(),
            region_code: region.into(),
            allocatable,
            allocated,
            utilization: Utilization::of(allocated, allocatable),
            systems_by_phase: [("Scheduled".to_owned(), 1)].into(),
            ready: true,
            ..Default::default()
        };
        records.push((keys.node(node), json(&record)));
    }
    let tenants = [("nj-gongan", "320100"), ("sz-shebao", "320500"), ("ks-yiliao", "320583")];
    for (tenant, region) in tenants {
        let record = TenantRecord {
            name: tenant.into(),
            display_name: tenant.into(),
            level: "City".into(),
            region_code: region.into(),
            home_node: "suzhou".into(),
            ready: true,
            ..Default::default()
        };
        records.push((keys.tenant(tenant), json(&record)));
    }
    let phases = ["Scheduled", "AwaitingCutover", "Completed", "Replicating", "RolledBack", "NotMigrated"];
    for (i, (tenant, region)) in tenants.iter().cycle().take(12).enumerate() {
        let id = format!("JS-{region}-{i:04}");
        let phase = phases[i % phases.len()];
        let record = SystemRecord {
            system_id: id.clone(),
            name: format!("s{i}"),
            tenant: (*tenant).into(),
            display_name: format!("系统 {i}"),
            region_code: (*region).into(),
            security_level: 1 + (i % 3) as u8,
            phase: phase.into(),
            node: Some("suzhou".into()),
            wave: Some(if i % 2 == 0 { "wave-1" } else { "wave-2" }.into()),
            approval: ApprovalState { required: i % 3 != 2, ..Default::default() },
            ..Default::default()
        };
        records.push((keys.system(&id), json(&record)));
        for sequence in 1..=2u64 {
            let entry = JournalEntry {
                system_id: id.clone(),
                region_code: (*region).into(),
                sequence,
                from: "Pending".into(),
                to: phase.into(),
                reason: "Planned".into(),
                time: "2025-03-03T08:00:00+08:00".into(),
                actor: "suyun-operator".into(),
                ..Default::default()
            };
            records.push((keys.journal(&id, sequence), json(&entry)));
        }
    }
    for (wave, order) in [("wave-1", 1), ("wave-2", 2)] {
        let counts = [("320100", "Scheduled"), ("320500", "Completed"), ("320583", "Replicating")]
            .into_iter()
            .map(|(region, phase)| (region.to_owned(), [(phase.to_owned(), 2)].into()))
            .collect();
        let record = WaveRecord {
            name: wave.into(),
            order,
            phase: "Running".into(),
            executor: "Simulated".into(),
            counts_by_region: counts,
            eta: None,
        };
        records.push((keys.wave(wave), json(&record)));
    }
    records
}

fn json(record: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(record).expect("records serialise")
}

#[derive(Arbitrary, Debug)]
enum Verb<'a> {
    Get,
    Post,
    Head,
    Put,
    Delete,
    Options,
    Patch,
    Other(&'a str),
}

const SEGMENTS: &[&str] = &[
    "api",
    "v1",
    "nodes",
    "tenants",
    "systems",
    "waves",
    "summary",
    "history",
    "cutover-approval",
    "healthz",
    "readyz",
    "openapi.json",
    "JS-320500-0001",
    "JS-320100-0000",
    "JS-320583-0002",
    "JS-320500-0004",
    "suzhou",
    "nanjing",
    "jiangsu",
    "sz-shebao",
    "nj-gongan",
    "wave-1",
    "",
    ".",
    "..",
    "%FF",
    "%2F",
    "%00",
    "%E5%8D%97",
];

#[derive(Arbitrary, Debug)]
enum Segment<'a> {
    Known(u8),
    /// Inserted as is: the URI may not parse (then hyper would have refused it; skipped).
    Raw(&'a str),
    /// Every byte percent-encoded except unreserved ASCII.
    Bytes(&'a [u8]),
}

const QUERY_KEYS: &[&str] =
    &["region", "phase", "wave", "node", "tenant", "q", "limit", "continue", "", "region[]", "REGION"];
const QUERY_VALUES: &[&str] = &[
    "320500",
    "320100",
    "320583",
    "320000",
    "province",
    "3205",
    "32050０",
    "南京",
    "AwaitingCutover",
    "wave-1",
    "suzhou",
    "0",
    "1",
    "-1",
    "18446744073709551616",
    "500",
    "JS-320500-0001",
    "",
    "%FF",
    "%",
    "a%2Cb",
];

#[derive(Arbitrary, Debug)]
enum Part<'a> {
    Known(u8),
    Raw(&'a str),
    Bytes(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum HeaderChoice<'a> {
    Authorization,
    Accept,
    AcceptEncoding,
    IfNoneMatch,
    ContentType,
    Origin,
    ContentLength,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Caller<'a> {
    Province,
    Suzhou,
    SuzhouReadOnly,
    Nanjing,
    Kunshan,
    /// No certificate (bearer tokens come from the headers, if any).
    NoCertificate,
    /// A verified certificate whose subject names no usable identity.
    UnusableCertificate(&'a str),
    /// An identity with any name and any scope text.
    Arbitrary {
        name: &'a str,
        scope: &'a str,
        read_only: bool,
    },
}

/// The path: one of the server's routes with its parameters filled in (so that most inputs reach
/// a handler), or any sequence of segments.
#[derive(Arbitrary, Debug)]
enum Path<'a> {
    Route { route: u8, parameters: Vec<Segment<'a>>, extra: Vec<Segment<'a>> },
    Segments(Vec<Segment<'a>>),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    verb: Verb<'a>,
    path: Path<'a>,
    trailing_slash: bool,
    query: Option<Vec<(Part<'a>, Part<'a>)>>,
    headers: Vec<(HeaderChoice<'a>, &'a [u8])>,
    caller: Caller<'a>,
    body: &'a [u8],
}

fn percent_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn part(part: &Part<'_>, known: &[&str], out: &mut String) {
    match part {
        Part::Known(i) => out.push_str(known[usize::from(*i) % known.len()]),
        Part::Raw(text) => out.push_str(text),
        Part::Bytes(bytes) => percent_encode(bytes, out),
    }
}

fn identity(name: &str, scope: Scope, read_only: bool) -> Option<Result<Identity, String>> {
    Some(Ok(Identity { name: name.to_owned(), scope, read_only, method: AuthMethod::Certificate }))
}

fn request(input: &Input<'_>) -> Option<Request<Body>> {
    let method = match input.verb {
        Verb::Get => Method::GET,
        Verb::Post => Method::POST,
        Verb::Head => Method::HEAD,
        Verb::Put => Method::PUT,
        Verb::Delete => Method::DELETE,
        Verb::Options => Method::OPTIONS,
        Verb::Patch => Method::PATCH,
        Verb::Other(name) => Method::from_bytes(name.as_bytes()).ok()?,
    };
    let mut target = String::new();
    let push = |segment: &Segment<'_>, target: &mut String| match segment {
        Segment::Known(i) => target.push_str(SEGMENTS[usize::from(*i) % SEGMENTS.len()]),
        Segment::Raw(text) => target.push_str(text),
        Segment::Bytes(bytes) => percent_encode(bytes, target),
    };
    match &input.path {
        Path::Route { route, parameters, extra } => {
            let template = ROUTES[usize::from(*route) % ROUTES.len()].path;
            let mut parameters = parameters.iter();
            for part in template.split('/').skip(1) {
                target.push('/');
                if part.starts_with('{') {
                    match parameters.next() {
                        Some(segment) => push(segment, &mut target),
                        None => target.push_str("JS-320500-0001"),
                    }
                } else {
                    target.push_str(part);
                }
            }
            for segment in extra {
                target.push('/');
                push(segment, &mut target);
            }
        }
        Path::Segments(segments) => {
            for segment in segments {
                target.push('/');
                push(segment, &mut target);
            }
        }
    }
    if target.is_empty() || input.trailing_slash {
        target.push('/');
    }
    if let Some(query) = &input.query {
        target.push('?');
        for (i, (key, value)) in query.iter().enumerate() {
            if i > 0 {
                target.push('&');
            }
            part(key, QUERY_KEYS, &mut target);
            target.push('=');
            part(value, QUERY_VALUES, &mut target);
        }
    }
    // A request-target hyper would refuse never reaches the router.
    let uri: http::Uri = target.parse().ok()?;
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in &input.headers {
        let name = match name {
            HeaderChoice::Authorization => header::AUTHORIZATION,
            HeaderChoice::Accept => header::ACCEPT,
            HeaderChoice::AcceptEncoding => header::ACCEPT_ENCODING,
            HeaderChoice::IfNoneMatch => header::IF_NONE_MATCH,
            HeaderChoice::ContentType => header::CONTENT_TYPE,
            HeaderChoice::Origin => header::ORIGIN,
            HeaderChoice::ContentLength => header::CONTENT_LENGTH,
            HeaderChoice::Other(name) => HeaderName::from_bytes(name.as_bytes()).ok()?,
        };
        builder = builder.header(name, HeaderValue::from_bytes(value).ok()?);
    }
    let certificate = match &input.caller {
        Caller::Province => identity("province-ops", Scope::Province, false),
        Caller::Suzhou => identity("suzhou-ops", Scope::Region("320500".into()), false),
        Caller::SuzhouReadOnly => identity("suzhou-viewer", Scope::Region("320500".into()), true),
        Caller::Nanjing => identity("nanjing-ops", Scope::Region("320100".into()), false),
        Caller::Kunshan => identity("kunshan-ops", Scope::Region("320583".into()), false),
        Caller::NoCertificate => None,
        Caller::UnusableCertificate(why) => Some(Err((*why).to_owned())),
        // Only scopes a certificate can carry: `Scope::parse` is what the handshake applies.
        Caller::Arbitrary { name, scope, read_only } => identity(name, Scope::parse(scope).ok()?, *read_only),
    };
    let mut request = builder.body(Body::from(input.body.to_vec())).ok()?;
    request.extensions_mut().insert(PeerCertificate(certificate));
    request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 40000))));
    Some(request)
}

fuzz_target!(|input: Input<'_>| {
    let harness = harness();
    let Some(request) = request(&input) else { return };
    let described = format!("{} {}", request.method(), request.uri());
    harness.runtime.block_on(async {
        let response = harness.app.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = response.into_body().collect().await.expect("response body").to_bytes();
        assert!(
            status != http::StatusCode::INTERNAL_SERVER_ERROR,
            "{described}: 500 {content_type} {}",
            String::from_utf8_lossy(&body)
        );
        // The web console (`/console/...`) answers its errors as HTML pages for people.
        let console = described.split_whitespace().nth(1).is_some_and(|uri| uri.starts_with("/console"));
        if harness.require_problem_json && !console && (status.is_client_error() || status.is_server_error()) {
            assert!(
                content_type.starts_with(PROBLEM_JSON),
                "{described}: {status} answered as {content_type:?}, not {PROBLEM_JSON}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    });
});
