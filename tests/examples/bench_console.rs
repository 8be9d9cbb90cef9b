//! Benchmark of the web console (issue 15), documented in `docs/benchmarks.md`.
//!
//! ```sh
//! tests/cluster/up
//! cargo run --release -p suyun-tests --example bench_console   # --requests 2000 --rounds 5
//! ```
//!
//! Publishes the synthetic Jiangsu set (7,900 systems) to the test cluster's status-store etcd,
//! starts the real apiserver, and compares, over one keep-alive HTTPS connection each with a
//! 苏州 (320500) client certificate and gzip accepted:
//!
//! * the baseline, the JSON endpoint `GET /api/v1/systems?phase=AwaitingCutover&limit=50`, and
//! * the console's page of the same systems, `GET /console/systems?phase=AwaitingCutover` (50 per page),
//!
//! alternating in rounds of `--requests` sequential requests each; the figure is the ratio of
//! the mean times per request (console / JSON, the issue's bound: at most 2). It also weighs the
//! first load of the console (the overview page, its stylesheet and its script, as a browser
//! gets them: gzip) against the bound of 150 KB. Then the same comparison for the province
//! (all 7,900 systems in scope).

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{Method, StatusCode};
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::https::{Connection, client_config};
use suyun_tests::readmodel::records_from_plan;

#[derive(Debug, Parser)]
struct Args {
    /// Sequential requests per endpoint and round.
    #[arg(long, default_value_t = 2000)]
    requests: u32,
    /// Rounds (each: JSON, then console).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

async fn time(
    connection: &mut Connection,
    path: &str,
    headers: &[(&str, &str)],
    requests: u32,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..requests {
        let reply = connection.send(Method::GET, path, headers, Bytes::new()).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{path}: {} {}", reply.status, reply.text());
    }
    Ok(started.elapsed() / requests)
}

/// Rounds of the JSON page against the console's page of the same systems; prints each
/// round and the median ratio.
async fn compare(
    scope: &str,
    json: &mut Connection,
    console: &mut Connection,
    console_headers: &[(&str, &str)],
    args: &Args,
) -> anyhow::Result<()> {
    let gzip = [("accept-encoding", "gzip")];
    let json_path = "/api/v1/systems?phase=AwaitingCutover&limit=50";
    let console_path = "/console/systems?phase=AwaitingCutover";
    // What the two pages hold (uncompressed): the console's paging line and the JSON's count.
    let cookie = console_headers.iter().filter(|(n, _)| *n == "cookie").map(|(_, v)| (*v).to_owned()).next();
    let plain =
        console.send(Method::GET, console_path, &[("cookie", cookie.as_deref().unwrap_or(""))], Bytes::new()).await?;
    let text = plain.text();
    let paging = text.split("id=\"paging\" role=\"status\">").nth(1).and_then(|t| t.split('<').next()).unwrap_or("?");
    let listed = json.send(Method::GET, json_path, &[], Bytes::new()).await?;
    let items = listed.json()["items"].as_array().map_or(0, Vec::len);
    println!(
        "\n{scope}: console page {} bytes ({paging}), JSON {} bytes ({items} items)",
        plain.body.len(),
        listed.body.len()
    );
    // Warm-up, then the rounds.
    time(json, json_path, &gzip, 200).await?;
    time(console, console_path, console_headers, 200).await?;
    let mut ratios = Vec::new();
    println!("\n{scope}: {json_path} against {console_path}\n");
    println!("| round | JSON µs/request | console µs/request | console / JSON |");
    println!("|---|---|---|---|");
    for round in 1..=args.rounds {
        let a = time(json, json_path, &gzip, args.requests).await?;
        let b = time(console, console_path, console_headers, args.requests).await?;
        let ratio = b.as_secs_f64() / a.as_secs_f64();
        ratios.push(ratio);
        println!("| {round} | {:.0} | {:.0} | {ratio:.2} |", a.as_secs_f64() * 1e6, b.as_secs_f64() * 1e6);
    }
    ratios.sort_by(f64::total_cmp);
    println!("\n{scope}: median ratio console / JSON {:.2} (bound 2)", ratios[ratios.len() / 2]);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let prefix = suyun_tests::etcd::unique_prefix("bench-console");
    let records = records_from_plan(&suyun_planner::synthetic::jiangsu(1));
    let systems = records.iter().filter(|r| matches!(r, suyun_store::readmodel::Record::System(_))).count();
    let _publisher = publish(&endpoint, &prefix, "bench", records).await?;
    let server = TestServer::start(&endpoint, &prefix, 1000).await?;
    let pem = server.ca.client("bench.suzhou", &["320500"]);
    let tls = client_config(&server.ca.pem.cert, Some((&pem.cert, &pem.key)))?;
    let mut json = Connection::open(server.addr, tls.clone()).await?;
    let mut console = Connection::open(server.addr, tls.clone()).await?;
    let gzip = ("accept-encoding", "gzip");

    // The first page opens the certificate's session; a browser then sends its cookie.
    let first = console.send(Method::GET, "/console/", &[gzip], Bytes::new()).await?;
    anyhow::ensure!(first.status == StatusCode::OK, "{} {}", first.status, first.text());
    let cookie = first.header("set-cookie").and_then(|c| c.split(';').next().map(str::to_owned)).unwrap_or_default();
    let mut weight = first.body.len();
    let mut parts = vec![("overview", first.body.len())];
    for asset in ["/console/assets/console.css", "/console/assets/console.js"] {
        let reply = console.send(Method::GET, asset, &[gzip], Bytes::new()).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{asset}: {}", reply.status);
        weight += reply.body.len();
        parts.push((asset, reply.body.len()));
    }
    let systems_page = console
        .send(Method::GET, "/console/systems?phase=AwaitingCutover", &[gzip, ("cookie", &cookie)], Bytes::new())
        .await?;
    let json_page =
        json.send(Method::GET, "/api/v1/systems?phase=AwaitingCutover&limit=50", &[gzip], Bytes::new()).await?;
    println!("{systems} systems published; 苏州 (320500) reads them through a client certificate");
    println!("first load (gzip): {weight} bytes = {parts:?} (bound 150 KB = 153,600 bytes)");
    println!("one page of 50 (gzip): console {} bytes, JSON {} bytes", systems_page.body.len(), json_page.body.len());

    let console_headers = [gzip, ("cookie", cookie.as_str())];
    compare("苏州 (320500)", &mut json, &mut console, &console_headers, &args).await?;

    // The province: the same filter over all 7,900 systems.
    let pem = server.ca.client("bench.province", &["province"]);
    let tls = client_config(&server.ca.pem.cert, Some((&pem.cert, &pem.key)))?;
    let mut json = Connection::open(server.addr, tls.clone()).await?;
    let mut console = Connection::open(server.addr, tls).await?;
    let first = console.send(Method::GET, "/console/", &[gzip], Bytes::new()).await?;
    let cookie = first.header("set-cookie").and_then(|c| c.split(';').next().map(str::to_owned)).unwrap_or_default();
    let console_headers = [gzip, ("cookie", cookie.as_str())];
    let page =
        console.send(Method::GET, "/console/systems?phase=AwaitingCutover", &console_headers, Bytes::new()).await?;
    println!("\nthe province's page of 50 (gzip): {} bytes", page.body.len());
    compare("province", &mut json, &mut console, &console_headers, &args).await?;
    server.stop().await?;
    Ok(())
}
