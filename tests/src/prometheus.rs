//! Metrics in tests: a plain-HTTP GET, a parser of the Prometheus text format, and a real
//! Prometheus server (the `prometheus` binary of Debian's `prometheus` package, installed by
//! `tests/cluster/prereqs`; `SUYUN_PROMETHEUS` overrides the path) scraping given targets every
//! second, with its storage in a temporary directory. The server stops and its directory goes
//! when the handle drops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::{Cluster, eventually};

/// `GET http://<addr><path_and_query>` (one connection, HTTP/1.1); the status and the body.
pub async fn http_get(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<(StatusCode, String)> {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr} timed out"))??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let request =
        Request::get(path_and_query).header(http::header::HOST, addr.to_string()).body(Empty::<Bytes>::new())?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    let result = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .with_context(|| format!("GET {addr}{path_and_query} timed out"))?;
    driver.abort();
    result
}

/// One sample of a text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`, `_sum`, `_count` for histogram series).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of a label, empty when absent.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or_default()
    }
}

/// Parses the samples of a text exposition (format 0.0.4); comments are skipped.
pub fn parse(text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("no value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().with_context(|| format!("bad value: {line}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').with_context(|| format!("unclosed labels: {line}"))?;
                (name.to_owned(), labels(body).with_context(|| format!("bad labels: {line}"))?)
            }
        };
        out.push(Sample { name, labels, value });
    }
    Ok(out)
}

fn labels(mut body: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    while !body.is_empty() {
        let (name, rest) = body.split_once("=\"").context("label without value")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("dangling escape"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => bail!("unterminated value"),
            }
        };
        out.insert(name.trim_start_matches(',').to_owned(), value);
        body = rest[end + 1..].trim_start_matches(',');
    }
    Ok(out)
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping fixed targets every second.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Where it listens (HTTP API).
    pub addr: SocketAddr,
    /// Its log.
    pub log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job `suyun-operator`, every second), logging to
    /// the cluster's log directory, and waits until it is ready.
    pub async fn start(cluster: &Cluster, targets: &[SocketAddr]) -> anyhow::Result<Prometheus> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = std::env::temp_dir().join(format!("suyun-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data"))?;
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: suyun-operator\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let logs = cluster.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("prometheus-{port}.log"));
        let file = std::fs::File::create(&log)?;
        let binary = std::env::var("SUYUN_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {binary} (install it with tests/cluster/prereqs)"))?;
        let prometheus = Prometheus { child, dir, addr, log };
        eventually(Duration::from_secs(60), || async {
            let (status, body) = http_get(addr, "/-/ready").await?;
            anyhow::ensure!(status == StatusCode::OK, "Prometheus not ready: {status} {body}");
            Ok(())
        })
        .await
        .with_context(|| format!("Prometheus did not become ready; see {}", prometheus.log.display()))?;
        Ok(prometheus)
    }

    /// Runs an instant query; the result vector's (labels, value) pairs.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={}", encode(promql))).await?;
        anyhow::ensure!(status == StatusCode::OK, "query {promql:?}: {status} {body}");
        let reply: serde_json::Value = serde_json::from_str(&body)?;
        anyhow::ensure!(reply["status"] == "success", "query {promql:?}: {body}");
        let data = &reply["data"];
        anyhow::ensure!(data["resultType"] == "vector", "query {promql:?} is not a vector: {body}");
        let mut out = Vec::new();
        for r in data["result"].as_array().context("no result")? {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(r["metric"].clone()).context("metric labels")?;
            let value: f64 = r["value"][1].as_str().context("sample value")?.parse()?;
            out.push((labels, value));
        }
        Ok(out)
    }

    /// The single value of a query that must return one series.
    pub async fn value(&self, promql: &str) -> anyhow::Result<f64> {
        match self.query(promql).await?.as_slice() {
            [(_, v)] => Ok(*v),
            other => bail!("{promql:?} returned {} series: {other:?}", other.len()),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_parses_with_escapes_and_infinities() {
        let text =
            "# HELP x y\n# TYPE x gauge\nx 1\ny{a=\"b\",c=\"d \\\"e\\\" \\\\ f\"} 2.5\nz_bucket{le=\"+Inf\"} +Inf\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0], Sample { name: "x".into(), labels: BTreeMap::new(), value: 1.0 });
        assert_eq!(samples[1].label("a"), "b");
        assert_eq!(samples[1].label("c"), "d \"e\" \\ f");
        assert_eq!(samples[1].value, 2.5);
        assert_eq!(samples[2].label("le"), "+Inf");
        assert!(samples[2].value.is_infinite());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("sum(suyun_leader{a=\"b c\"})"), "sum%28suyun_leader%7Ba%3D%22b%20c%22%7D%29");
    }
}
