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

    /// Name of this replica, reported in Events (the Pod name in a cluster).
    #[arg(long, env = "POD_NAME", default_value = "suyun-operator")]
    pub instance: String,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn threshold(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=100.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not a percentage between 0 and 100")) }
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
}
