//! `suyun-operator`: see the library crate for what it does.

use clap::Parser;

/// See `docs/benchmarks.md` ("Migration loop"): the allocator is measurably part of an
/// iteration's cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = suyun_operator::config::Config::parse();
    suyun_operator::telemetry::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(suyun_operator::run(config));
    // Blocking work still running (a DNS lookup of an unreachable endpoint) must not hold the
    // exit back: stopping is bounded.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    outcome
}
