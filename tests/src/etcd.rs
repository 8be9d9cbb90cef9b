//! etcd for status-store tests: unique key prefixes on the shared status-store etcd, and
//! private etcd processes (from the binary `tests/cluster/build` caches) that a test may kill
//! and restart on the same port and data directory, over plain HTTP or over TLS with client
//! certificates required.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::repo_root;
use crate::tls::{Pem, TestCa, write};

/// A key prefix no other test (or run) uses: `/suyun-test/<name>-<pid>-<nanos>/`.
pub fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("/suyun-test/{name}-{}-{nanos}/", std::process::id())
}

/// Connects to `endpoint` (plain HTTP).
pub async fn connect(endpoint: &str) -> anyhow::Result<etcd_client::Client> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10));
    Ok(etcd_client::Client::connect([endpoint], Some(options)).await?)
}

/// The etcd binary built by `tests/cluster/build` (starting the cluster builds it).
pub fn etcd_binary() -> anyhow::Result<PathBuf> {
    crate::cluster();
    let cache = std::env::var("SUYUN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/suyun"));
    let bin = cache.join("bin");
    for entry in std::fs::read_dir(&bin).with_context(|| format!("reading {}", bin.display()))? {
        let candidate = entry?.path().join("etcd");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!("no etcd binary under {}", bin.display())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The PEM files of a TLS etcd: its CA, its server certificate, and a client certificate the
/// server accepts (`CN=suyun-test-client`).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// Server certificate and key.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl EtcdTls {
    fn generate(dir: &std::path::Path, ca: &TestCa) -> EtcdTls {
        let server = ca.server();
        let Pem { cert, key, .. } = ca.client("suyun-test-client", &[]);
        EtcdTls {
            ca: write(dir, "ca.pem", &ca.pem.cert),
            server_cert: write(dir, "server.pem", &server.cert),
            server_key: write(dir, "server-key.pem", &server.key),
            client_cert: write(dir, "client.pem", &cert),
            client_key: write(dir, "client-key.pem", &key),
        }
    }

    /// Client TLS options with the CA and the client certificate.
    pub fn client_options(&self) -> anyhow::Result<etcd_client::TlsOptions> {
        Ok(etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&self.ca)?))
            .identity(etcd_client::Identity::from_pem(
                std::fs::read(&self.client_cert)?,
                std::fs::read(&self.client_key)?,
            )))
    }
}

/// An etcd process of the test's own, on loopback, with its data under `target/`.
#[derive(Debug)]
pub struct EtcdProcess {
    name: String,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    tls: Option<EtcdTls>,
    child: Option<Child>,
}

impl EtcdProcess {
    /// Starts a fresh etcd named `name` (plain HTTP) and waits until it answers.
    pub async fn start(name: &str) -> anyhow::Result<EtcdProcess> {
        Self::start_with(name, None).await
    }

    /// Starts a fresh etcd named `name` serving clients over TLS with a server certificate of
    /// `ca` and requiring client certificates signed by `ca`; waits until it answers.
    pub async fn start_tls(name: &str, ca: &TestCa) -> anyhow::Result<EtcdProcess> {
        Self::start_with(name, Some(ca)).await
    }

    async fn start_with(name: &str, ca: Option<&TestCa>) -> anyhow::Result<EtcdProcess> {
        let data_dir = repo_root().join("target/test-etcd").join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)?;
        let tls = ca.map(|ca| EtcdTls::generate(&data_dir.join("pki"), ca));
        let mut etcd = EtcdProcess {
            name: name.to_owned(),
            data_dir,
            client_port: free_port()?,
            peer_port: free_port()?,
            tls,
            child: None,
        };
        etcd.restart().await?;
        Ok(etcd)
    }

    /// `http://127.0.0.1:<port>`, or `https://…` for a TLS etcd.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The PEM files of a TLS etcd.
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    async fn probe(&self) -> anyhow::Result<()> {
        let mut options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.client_options()?);
        }
        let mut client = etcd_client::Client::connect([self.endpoint()], Some(options)).await?;
        client.status().await?;
        Ok(())
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the process on the same ports and data directory and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.data_dir.with_extension("log"))?;
        let mut command = Command::new(etcd_binary()?);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.data_dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{}={peer}", self.name)])
            .args(["--log-level", "warn", "--unsafe-no-fsync"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        self.child = Some(child);
        crate::eventually(Duration::from_secs(20), || self.probe())
            .await
            .with_context(|| format!("etcd {} did not become ready", self.name))
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.data_dir.with_extension("log"));
    }
}

/// What is wrong with the journals of `systems` in the store under `keys`: each chain must
/// verify, and every transition a system's status shows must be journaled exactly once (the
/// operator's own `verify_chain` for the chain; the count is the test's). Empty when all is well.
pub async fn journal_problems(
    etcd: &mut etcd_client::Client,
    keys: &suyun_store::readmodel::Keys,
    systems: &[suyun_crds::v1alpha1::GovSystem],
) -> Vec<String> {
    use kube::ResourceExt as _;
    let journals = match suyun_operator::store::read_journals(etcd, keys, None).await {
        Ok(j) => j,
        Err(e) => return vec![format!("reading the journals: {e}")],
    };
    let mut problems = Vec::new();
    for system in systems {
        let id = &system.spec.system_id;
        let chain = journals.get(id).cloned().unwrap_or_default();
        if let Err(e) = suyun_operator::journal::verify_chain(&chain) {
            problems.push(format!("{id}: {e}"));
        }
        let uid = system.uid().unwrap_or_default();
        let mut count: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
        for (key, bytes) in &chain {
            match serde_json::from_slice::<suyun_store::readmodel::JournalEntry>(bytes) {
                Ok(e) if e.uid == uid => *count.entry(e.transition).or_default() += 1,
                Ok(_) => {}
                Err(e) => problems.push(format!("{id}: entry {key} does not parse: {e}")),
            }
        }
        for t in system.status.iter().flat_map(|s| &s.transitions) {
            if count.get(&t.sequence) != Some(&1) {
                problems.push(format!("{id}: transition {} journaled {:?} times", t.sequence, count.get(&t.sequence)));
            }
        }
    }
    problems
}
