//! `suyun-operator`: see the library crate for what it does.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = suyun_operator::config::Config::parse();
    suyun_operator::telemetry::init(config.log_format);
    suyun_operator::run(config).await
}
