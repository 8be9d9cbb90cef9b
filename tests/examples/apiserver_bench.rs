//! Benchmark of the REST API (issue 5 §6), documented in `docs/benchmarks.md`.
//!
//! ```sh
//! tests/cluster/up
//! cargo run --release -p suyun-tests --example apiserver_bench
//! ```
//!
//! Publishes the synthetic Jiangsu set (7,900 systems) to the test cluster's status-store etcd
//! with the operator's publisher, starts the real apiserver and, in the same process, a
//! minimal axum + rustls server (same TLS settings, same accept loop) whose handler returns the
//! very bytes the apiserver returned. The load comes from a second process (this binary with
//! `load`), over loopback, HTTP/1.1 keep-alive with a 苏州 (320500) client certificate; each
//! run is bounded in time and in requests. Throughput runs send back to back (closed loop); the
//! latency runs at 256 connections are made twice: back to back (the latency of a saturated
//! server, mostly queueing) and at a fixed offered rate (`--p99-rate`, open loop, latency from
//! each request's scheduled time).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::Method;
use suyun_operator::store::{Fence, Publisher, StoreConfig};
use suyun_store::readmodel::Record;
use suyun_tests::apiserver::TestServer;
use suyun_tests::https::{Connection, client_config};
use suyun_tests::readmodel::records_from_plan;
use suyun_tests::tls::write;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    load: Option<Load>,
    /// Seconds per run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Connections of the throughput runs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections of the latency runs.
    #[arg(long, default_value_t = 256)]
    p99_connections: usize,
    /// Offered load of the fixed-rate latency runs, requests per second over all connections.
    #[arg(long, default_value_t = 4000)]
    p99_rate: u64,
}

#[derive(Debug, Subcommand)]
enum Load {
    /// The load generator (run by the benchmark as a second process).
    Load {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long)]
        pki: PathBuf,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        seconds: u64,
        #[arg(long, default_value_t = 3_000_000)]
        max_requests: u64,
        /// Open loop: this many requests per second over all connections, each connection
        /// sending on its own fixed schedule, latency counted from the scheduled time (so a
        /// slow response delays the next one's clock, not the measurement). Without it each
        /// connection sends back to back (closed loop).
        #[arg(long)]
        rate: Option<u64>,
    },
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Stats {
    requests: u64,
    errors: u64,
    seconds: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.load {
        Some(Load::Load { addr, path, pki, connections, seconds, max_requests, rate }) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let stats = runtime.block_on(load(addr, &path, &pki, connections, seconds, max_requests, rate))?;
            println!("{}", serde_json::to_string(&stats)?);
            Ok(())
        }
        None => tokio::runtime::Runtime::new()?.block_on(bench(args)),
    }
}

async fn load(
    addr: SocketAddr,
    path: &str,
    pki: &Path,
    connections: usize,
    seconds: u64,
    max: u64,
    rate: Option<u64>,
) -> anyhow::Result<Stats> {
    let read = |name: &str| std::fs::read_to_string(pki.join(name));
    let tls = client_config(&read("ca.crt")?, Some((&read("client.crt")?, &read("client.key")?)))?;
    let mut open = Vec::with_capacity(connections);
    for _ in 0..connections {
        open.push(Connection::open(addr, tls.clone()).await?);
    }
    let per_connection = max / connections as u64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    // Open loop: connection i sends at started + offset_i + k × interval.
    let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r.max(1) as f64));
    let tasks: Vec<_> = open
        .into_iter()
        .enumerate()
        .map(|(i, mut connection)| {
            let path = path.to_owned();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(65_536);
                let mut errors = 0u64;
                let mut next = interval.map(|every| started + every.mul_f64(i as f64 / connections as f64));
                while Instant::now() < deadline && (latencies.len() as u64) < per_connection {
                    let t0 = match (next, interval) {
                        (Some(at), Some(every)) => {
                            tokio::time::sleep_until(at.into()).await;
                            next = Some(at + every);
                            at
                        }
                        _ => Instant::now(),
                    };
                    match connection.send(Method::GET, &path, &[], Bytes::new()).await {
                        Ok(reply) if reply.status.is_success() => latencies.push(t0.elapsed().as_micros() as u32),
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64
            / 1000.0
    };
    Ok(Stats {
        requests: all.len() as u64,
        errors,
        seconds: elapsed,
        rps: all.len() as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: all.last().copied().unwrap_or(0) as f64 / 1000.0,
    })
}

fn run_load(
    addr: SocketAddr,
    path: &str,
    pki: &Path,
    connections: usize,
    seconds: u64,
    rate: Option<u64>,
) -> anyhow::Result<Stats> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.args(["load", "--addr", &addr.to_string(), "--path", path, "--pki"]).arg(pki).args([
        "--connections",
        &connections.to_string(),
        "--seconds",
        &seconds.to_string(),
    ]);
    if let Some(rate) = rate {
        command.args(["--rate", &rate.to_string()]);
    }
    let output = command.output()?;
    anyhow::ensure!(output.status.success(), "load generator failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(serde_json::from_slice(&output.stdout)?)
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let prefix = format!("/suyun-bench/{}/", std::process::id());
    let records = records_from_plan(&suyun_planner::synthetic::jiangsu(1));
    let systems = records.iter().filter(|r| matches!(r, Record::System(_))).count();
    let started = Instant::now();
    let config = StoreConfig::new(vec![endpoint.clone()], &prefix);
    let fence = Fence::campaign(config.connect().await?, config.keys(), "bench-operator", 10).await?;
    let mut publisher = Publisher::new(fence, config.max_txn_ops);
    let report = publisher.reconcile(records.clone()).await?;
    println!(
        "published {} records ({systems} systems) in {} transactions, {:.2} s",
        report.puts,
        report.txns,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let server = TestServer::start(&endpoint, &prefix, 1000).await?;
    println!("apiserver loaded the store in {:.2} s", started.elapsed().as_secs_f64());
    let pki = suyun_tests::repo_root().join("target/bench-pki");
    let client = server.ca.client("suzhou-ops", &["320500"]);
    write(&pki, "ca.crt", &server.ca.pem.cert);
    write(&pki, "client.crt", &client.cert);
    write(&pki, "client.key", &client.key);

    let node = records
        .iter()
        .find_map(|r| match r {
            Record::Node(n) if n.region_code == "320500" => Some(n.name.clone()),
            _ => None,
        })
        .expect("苏州's node");
    let targets = [
        ("GET nodes/{name}", format!("/api/v1/nodes/{node}")),
        ("GET systems (苏州, phase filter, limit 50)", "/api/v1/systems?phase=AwaitingCutover&limit=50".to_owned()),
    ];

    // The baseline: the same bytes from a handler that does nothing else.
    let caller = server.with_certificate("suzhou-ops", &["320500"]);
    let mut baseline = Router::new();
    for (_, path) in &targets {
        let reply = caller.get(path).await?;
        anyhow::ensure!(reply.status.is_success(), "{path}: {}", reply.status);
        println!("{path}: {} bytes", reply.body.len());
        let body = reply.body.clone();
        let route = path.split('?').next().unwrap_or(path).to_owned();
        baseline = baseline.route(
            &route,
            get(move || {
                let body = body.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
    }
    let server_pem = server.ca.server();
    let tls = suyun_apiserver::server::tls_config(
        server_pem.cert.as_bytes(),
        server_pem.key.as_bytes(),
        Some(server.ca.pem.cert.as_bytes()),
        None,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let baseline_addr = listener.local_addr()?;
    let tls = suyun_apiserver::server::ServerTls::fixed(tls);
    let limits = suyun_apiserver::server::Limits::default();
    tokio::spawn(suyun_apiserver::serve(listener, tls, baseline, limits, std::future::pending()));

    println!();
    println!("| endpoint | server | connections | offered | requests | req/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (name, path) in &targets {
        let mut rps = [0.0; 2];
        for (i, (label, addr)) in
            [("minimal axum+rustls", baseline_addr), ("suyun-apiserver", server.addr)].iter().enumerate()
        {
            let stats = run_load(*addr, path, &pki, args.connections, args.seconds, None)?;
            row(name, label, args.connections, None, &stats);
            rps[i] = stats.rps;
        }
        ratios.push((name, rps[1] / rps[0]));
        for rate in [None, Some(args.p99_rate)] {
            for (label, addr) in [("minimal axum+rustls", baseline_addr), ("suyun-apiserver", server.addr)] {
                let stats = run_load(addr, path, &pki, args.p99_connections, args.seconds, rate)?;
                row(name, label, args.p99_connections, rate, &stats);
            }
        }
    }
    println!();
    for (name, ratio) in ratios {
        println!("{name}: apiserver / baseline throughput = {ratio:.2}");
    }
    server.stop().await?;
    let mut etcd = suyun_tests::etcd::connect(&endpoint).await?;
    etcd.delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix())).await?;
    Ok(())
}

fn row(name: &str, label: &str, connections: usize, rate: Option<u64>, s: &Stats) {
    let offered = rate.map_or("as fast as answered".to_owned(), |r| format!("{r}/s"));
    println!(
        "| {name} | {label} | {connections} | {offered} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
        s.requests, s.rps, s.p50_ms, s.p99_ms, s.max_ms, s.errors
    );
}
