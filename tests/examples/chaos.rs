//! The full chaos run (issue 12 §3), documented in `docs/reliability.md` ("Chaos"):
//!
//! ```sh
//! cargo build --release -p suyun-operator
//! cargo run --release -p suyun-tests --example chaos -- --systems 7900
//! ```
//!
//! The same driver, faults and checker as the reduced test `tests/tests/chaos.rs`
//! (`suyun_tests::chaos`), on the whole synthetic Jiangsu set by default. Prints the figures and
//! every violation; exits non-zero when the checker found any.

use std::time::Duration;

use clap::Parser;
use suyun_tests::chaos::{Options, run, seed_from_env};

#[derive(Debug, Parser)]
#[command(about = "Chaos run of the Suyun operator on the synthetic Jiangsu set")]
struct Args {
    /// Systems to migrate (7,900 or more: the whole set).
    #[arg(long, default_value_t = 7900)]
    systems: usize,
    /// Seed of the fault schedule (default: SUYUN_CHAOS_SEED, or from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Leader kills.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Leader pauses.
    #[arg(long, default_value_t = 2)]
    pauses: usize,
    /// Seconds the status-store etcd stays down.
    #[arg(long, default_value_t = 30)]
    store_outage_seconds: u64,
    /// Lease duration and store lease TTL of the replicas, seconds.
    #[arg(long, default_value_t = 8)]
    lease_seconds: u64,
    /// maxConcurrentMigrations of every node (the synthetic set has 4).
    #[arg(long, default_value_t = 16)]
    node_concurrency: u32,
    /// `--debounce-ms` of the replicas.
    #[arg(long, default_value_t = 300)]
    debounce_ms: u64,
    /// timeCompression while faults are injected.
    #[arg(long, default_value_t = 600)]
    slow_compression: u32,
    /// timeCompression after the last fault.
    #[arg(long, default_value_t = 100_000)]
    fast_compression: u32,
    /// Shortest and longest wait before a fault, seconds.
    #[arg(long, num_args = 2, default_values_t = [1, 10])]
    gap_seconds: Vec<u64>,
    /// Seconds between full lists of every GovSystem.
    #[arg(long, default_value_t = 30)]
    snapshot_seconds: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5400)]
    timeout_seconds: u64,
    #[command(flatten)]
    cluster: suyun_tests::bench::OwnCluster,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = Options {
        systems: args.systems,
        seed: args.seed.unwrap_or_else(seed_from_env),
        kills: args.kills,
        pauses: args.pauses,
        store_outage: Duration::from_secs(args.store_outage_seconds),
        gap: (Duration::from_secs(args.gap_seconds[0]), Duration::from_secs(args.gap_seconds[1])),
        lease_seconds: args.lease_seconds,
        node_concurrency: Some(args.node_concurrency),
        debounce_ms: args.debounce_ms,
        slow_compression: args.slow_compression,
        fast_compression: args.fast_compression,
        snapshot_every: Duration::from_secs(args.snapshot_seconds),
        timeout: Duration::from_secs(args.timeout_seconds),
        cluster_dir: args.cluster.dir("chaos-full"),
        keep_cluster: args.cluster.keep_cluster,
        ..Options::reduced()
    };
    let report = run(&options)?;
    println!("\n## chaos summary\n\n{}", report.summary());
    anyhow::ensure!(report.violations.count() == 0, "{} violations", report.violations.count());
    Ok(())
}
