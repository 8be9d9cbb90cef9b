//! Command-line and environment configuration of the operator.

use clap::{Parser, ValueEnum};

/// Settings of the operator; each flag can also be set by its environment variable.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "suyun-operator",
    version,
    about = "Suyun operator: reconciles the provincial cloud's nodes, tenants, systems and migration waves"
)]
pub struct Config {
    /// Utilisation (percent of allocatable) above which a CloudNode reports CapacityPressure.
    #[arg(long, env = "SUYUN_CAPACITY_PRESSURE_THRESHOLD", default_value_t = 85.0, value_parser = threshold)]
    pub capacity_pressure_threshold: f64,

    /// Log format: text for people, json for log pipelines.
    #[arg(long, env = "SUYUN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Name of this replica, reported in Events and held in the leader Lease (the Pod name in a
    /// cluster).
    /// Defaults to `suyun-operator-<host>-<pid>`: it must differ between replicas.
    #[arg(long, env = "POD_NAME", default_value_t = default_instance())]
    pub instance: String,

    /// Namespace of the leader-election Lease (the operator's own Namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, env = "SUYUN_LEASE_NAME", default_value = "suyun-operator")]
    pub lease_name: String,

    /// Seconds a leader's Lease stays valid without renewal; a standby takes over after it.
    #[arg(long, env = "SUYUN_LEASE_DURATION_SECONDS", default_value_t = 10)]
    pub lease_duration_seconds: u64,

    /// Milliseconds the migration loop waits after a change before planning, so that a burst
    /// of changes is planned once.
    #[arg(long, env = "SUYUN_DEBOUNCE_MS", default_value_t = 300)]
    pub debounce_ms: u64,

    /// Seconds before the first retry of a failed phase; each further retry waits twice as
    /// long, up to 5 minutes.
    #[arg(long, env = "SUYUN_RETRY_BACKOFF_SECONDS", default_value_t = 10)]
    pub retry_backoff_seconds: i64,

    /// Seconds between reachability probes (`GET /version`) of each member cluster; a member
    /// counts as unreachable after 3 failed probes in a row.
    #[arg(long, env = "SUYUN_MEMBER_PROBE_INTERVAL_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub member_probe_interval_seconds: u64,

    /// Growth of what migrated systems use, percent per year, for the run-out date of each
    /// node the operator computes after every plan (`suyun_node_run_out_timestamp_seconds`,
    /// the read-model's nodes); `suyunctl forecast --growth` answers the same offline.
    #[arg(long, env = "SUYUN_FORECAST_GROWTH_PERCENT", default_value_t = 10.0, value_parser = growth)]
    pub forecast_growth_percent: f64,

    /// How far ahead, in days, the operator looks for a node's run-out date.
    #[arg(long, env = "SUYUN_FORECAST_HORIZON_DAYS", default_value_t = 730, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub forecast_horizon_days: u32,

    /// Plain-HTTP listen address of `/metrics`, `/healthz` and `/readyz`, served by every
    /// replica, leader or standby (port 0 picks a free port, logged at start).
    #[arg(long, env = "SUYUN_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: std::net::SocketAddr,

    /// The status store (etcd) the read-model and journal are published to; without
    /// `--store-endpoints` nothing is published.
    #[command(flatten)]
    pub store: crate::store::StoreConfig,
}

impl Config {
    /// The migration loop's debounce.
    pub fn debounce(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.debounce_ms)
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("suyun-operator-{host}-{}", std::process::id())
}

fn threshold(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=100.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not a percentage between 0 and 100")) }
}

fn growth(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not a growth rate between 0 and 1000 percent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_must_be_a_percentage() {
        assert!(Config::try_parse_from(["suyun-operator", "--capacity-pressure-threshold", "90"]).is_ok());
        assert!(Config::try_parse_from(["suyun-operator", "--capacity-pressure-threshold", "120"]).is_err());
        assert!(Config::try_parse_from(["suyun-operator", "--capacity-pressure-threshold", "x"]).is_err());
    }

    #[test]
    fn metrics_listen_defaults_to_every_interface_on_8080() {
        let config = Config::try_parse_from(["suyun-operator"]).unwrap();
        assert_eq!(config.metrics_listen.to_string(), "0.0.0.0:8080");
        let config = Config::try_parse_from(["suyun-operator", "--metrics-listen", "127.0.0.1:0"]).unwrap();
        assert_eq!(config.metrics_listen.port(), 0);
        assert!(Config::try_parse_from(["suyun-operator", "--metrics-listen", "nowhere"]).is_err());
    }
}
