//! The real `suyun-operator` binary as a child process of a test, stopped (SIGTERM, then kill)
//! when the handle drops. Its log goes to `target/test-cluster/logs/<name>.log`; its metrics
//! listener to a free loopback port ([`OperatorProcess::metrics_addr`]), so that several
//! operators run side by side.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

use crate::Cluster;

/// A running operator process.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Child,
    /// Where its log goes.
    pub log: PathBuf,
    /// Where it serves `/metrics`, `/healthz` and `/readyz` (plain HTTP).
    pub metrics_addr: SocketAddr,
}

static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// Path of the `suyun-operator` binary next to the test executable, (re)built once per test
/// process when it is missing or older than the sources it is built from: `cargo test -p
/// suyun-tests` alone does not build other packages' binaries, and a stale operator would test
/// old code. (An up-to-date binary is used as it is: a nested `cargo build -p suyun-operator`
/// resolves features differently from `cargo test --workspace` and would recompile dependencies.)
pub fn binary() -> PathBuf {
    built("suyun-operator")
}

/// Path of the `suyunctl` binary, built like [`binary`].
pub fn suyunctl() -> PathBuf {
    built("suyunctl")
}

fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("test executable lives in target/<profile>/deps");
    let bins = [dir.join("suyun-operator"), dir.join("suyunctl")];
    let built = BUILT.get_or_init(|| {
        if bins.iter().all(|b| is_fresh(b)) {
            return Ok(());
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "suyun-operator", "--bins"]).current_dir(crate::repo_root());
        if release {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            other => Err(format!("building suyun-operator failed: {other:?}")),
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    dir.join(name)
}

/// Whether `bin` exists and is newer than every source, manifest and the lock file of the
/// crates it is built from.
fn is_fresh(bin: &std::path::Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else { return false };
    let root = crate::repo_root();
    let mut pending: Vec<PathBuf> =
        ["Cargo.toml", "Cargo.lock", "crds", "operator"].iter().map(|p| root.join(p)).collect();
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        } else if path.extension().is_some_and(|e| e == "rs" || e == "toml" || e == "lock")
            && meta.modified().is_ok_and(|m| m > built)
        {
            return false;
        }
    }
    true
}

impl OperatorProcess {
    /// Starts the operator against the test cluster with extra arguments. Unless `args` set
    /// `--metrics-listen`, the metrics listener goes to a free port on 127.0.0.1.
    pub fn start(cluster: &Cluster, name: &str, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_kubeconfig(cluster, name, args, &cluster.kubeconfig)
    }

    /// Starts the operator like [`start`](Self::start), with the credentials of `kubeconfig`
    /// (a ServiceAccount's token, in the RBAC test) instead of the admin's.
    pub fn start_with_kubeconfig(
        cluster: &Cluster,
        name: &str,
        args: &[&str],
        kubeconfig: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let bin = binary();
        anyhow::ensure!(bin.exists(), "{} not built; run the tests with `cargo test --workspace`", bin.display());
        let logs = cluster.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let given = args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix("--metrics-listen") {
            Some(v) if v.starts_with('=') => Some(v[1..].to_owned()),
            Some("") => args.get(i + 1).map(|v| (*v).to_owned()),
            _ => None,
        });
        let (metrics_addr, extra) = match given {
            Some(addr) => (addr.parse().with_context(|| format!("--metrics-listen {addr}"))?, None),
            None => {
                let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                (addr, Some(format!("--metrics-listen={addr}")))
            }
        };
        let child = Command::new(&bin)
            .args(args)
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            // `SUYUN_TEST_OPERATOR_LOG` overrides the filter, e.g. to add `kube_runtime=debug`.
            .env(
                "RUST_LOG",
                std::env::var("SUYUN_TEST_OPERATOR_LOG").unwrap_or_else(|_| "info,suyun_operator=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self { child, log, metrics_addr })
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (up to 10 s) for a clean exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// Kills the process without letting it clean up (a crash: the Lease is not released).
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"TERM"`, `"INT"`, …) without waiting.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status();
    }

    /// Waits up to `timeout` for the process to exit; its exit status, if it did.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// How it exited (reaping it), or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// A port free on 127.0.0.1 at the time of asking.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if self.running() {
            self.terminate();
        }
    }
}
