//! The real `suyun-operator` binary as a child process of a test, stopped (SIGTERM, then kill)
//! when the handle drops. Its log goes to `target/test-cluster/logs/<name>.log`.

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
}

static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// Path of the `suyun-operator` binary next to the test executable, (re)built once per test
/// process: `cargo test -p suyun-tests` alone does not build other packages' binaries, and a
/// stale operator would test old code.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/suyun-operator
    let dir = exe.parent().and_then(|d| d.parent()).expect("test executable lives in target/<profile>/deps");
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "suyun-operator", "--bin", "suyun-operator"]).current_dir(crate::repo_root());
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
    dir.join("suyun-operator")
}

impl OperatorProcess {
    /// Starts the operator against the test cluster with extra arguments.
    pub fn start(cluster: &Cluster, name: &str, args: &[&str]) -> anyhow::Result<Self> {
        let bin = binary();
        anyhow::ensure!(bin.exists(), "{} not built; run the tests with `cargo test --workspace`", bin.display());
        let logs = cluster.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(&bin)
            .args(args)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,suyun_operator=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self { child, log })
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
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if self.running() {
            self.terminate();
        }
    }
}
