//! `deploy/run-local` as a new user runs it, then Ctrl-C: a terminal sends SIGINT to the whole
//! foreground process group. Everything the script started (the four cluster components, the
//! REST apiserver, the operator) must be gone within 15 s of the signal, with no stream of etcd
//! warnings in the output.
//!
//! The script runs as a process group of its own, on a cluster directory of its own
//! (`SUYUN_LOCAL_CLUSTER_DIR`), with the binaries next to this test executable
//! (`SUYUN_PREBUILT_BIN_DIR`, so it runs no nested `cargo build`), and with `--members 2`: two
//! city CloudNodes backed by member clusters of their own, which must be reachable while it runs
//! and stopped with the rest.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use suyun_tests::{operator, repo_root, stop_cluster_in};

const BOUND: Duration = Duration::from_secs(15);

/// Whether process `pid` runs (a zombie waiting to be reaped does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Processes (pid, command line) working in `dir`: the cluster components are started there.
fn working_in(dir: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .filter(|pid| running(*pid))
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The REST apiserver binary next to the test executable (built by `cargo test --workspace`;
/// built here when missing).
fn apiserver_binary(dir: &Path) -> PathBuf {
    let bin = dir.join("suyun-apiserver");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "suyun-apiserver", "--bin", "suyun-apiserver"])
            .current_dir(repo_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building suyun-apiserver failed");
    }
    bin
}

/// Kills what is left if the test fails half-way.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in [self.0.join("operator.pid"), self.0.join("rest/apiserver.pid")].iter().filter_map(|p| read_pid(p)) {
            if running(pid) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
        for member in std::fs::read_dir(self.0.join("members")).into_iter().flatten().flatten() {
            let _ = stop_cluster_in(&member.path());
        }
        let _ = stop_cluster_in(&self.0);
    }
}

#[test]
fn ctrl_c_stops_run_local_and_everything_it_started_within_15_seconds() {
    let root = repo_root();
    let dir = root.join("target/outage-run-local");
    let _ = stop_cluster_in(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let _cleanup = Cleanup(dir.clone());
    let bins = operator::binary().parent().unwrap().to_path_buf();
    apiserver_binary(&bins);
    let output = root.join("target/outage-run-local.out");
    let file = std::fs::File::create(&output).unwrap();
    let mut script = Command::new("bash")
        .arg(root.join("deploy/run-local"))
        .args(["--members", "2"])
        .current_dir(&root)
        .env("SUYUN_LOCAL_CLUSTER_DIR", &dir)
        .env("SUYUN_PREBUILT_BIN_DIR", &bins)
        .env_remove("SUYUN_KEEP_CLUSTER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = script.id();
    let text = || std::fs::read_to_string(&output).unwrap_or_default();

    // Up and leading (a fresh machine builds the cluster binaries first: up to 15 minutes).
    let started = Instant::now();
    loop {
        let out = text();
        if out.contains("Suyun is running") && out.contains("migration loop started") {
            break;
        }
        if let Ok(Some(status)) = script.try_wait() {
            panic!("run-local ended ({status}) before Suyun ran:\n{out}");
        }
        assert!(started.elapsed() < Duration::from_secs(900), "run-local did not start:\n{out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("run-local up and leading after {:?}", started.elapsed());

    let mut pids: Vec<(String, u32)> = ["etcd-kube", "etcd-store", "kube-apiserver", "kube-controller-manager"]
        .iter()
        .map(|name| (name.to_string(), read_pid(&dir.join(format!("{name}.pid"))).expect("a pid file per component")))
        .collect();
    pids.push(("REST apiserver".into(), read_pid(&dir.join("rest/apiserver.pid")).expect("REST apiserver pid file")));
    pids.push(("operator".into(), read_pid(&dir.join("operator.pid")).expect("operator pid file")));
    // The two member clusters run, and their CloudNodes reach them.
    let members: Vec<PathBuf> = std::fs::read_dir(dir.join("members")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(members.len(), 2, "{members:?}");
    for member in &members {
        let name = member.file_name().unwrap().to_string_lossy().to_string();
        for component in ["etcd-kube", "kube-apiserver"] {
            let pid = read_pid(&member.join(format!("{component}.pid"))).expect("a pid file per member component");
            pids.push((format!("{component} of member {name}"), pid));
        }
    }
    let management = suyun_tests::Cluster {
        kubeconfig: dir.join("kubeconfig"),
        etcd_endpoints: String::new(),
        dir: dir.clone(),
        path: String::new(),
    };
    let reachable = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = management.client().await.unwrap();
        let nodes = kube::Api::<suyun_crds::v1alpha1::CloudNode>::all(client);
        suyun_tests::eventually(Duration::from_secs(60), || async {
            let all = nodes.list(&Default::default()).await?.items;
            let reachable: Vec<String> = all
                .iter()
                .filter(|n| n.status.as_ref().and_then(|s| s.cluster.as_ref()).is_some_and(|c| c.reachable))
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            anyhow::ensure!(reachable.len() == 2, "reachable members: {reachable:?}");
            Ok(reachable)
        })
        .await
    });
    let reachable = reachable.unwrap_or_else(|e| panic!("{e:#}\n{}", text()));
    eprintln!("members reachable: {reachable:?}");
    console_login_as_printed(&text(), &dir);
    for (name, pid) in &pids {
        assert!(running(*pid), "{name} ({pid}) is not running");
    }
    assert!(!working_in(&dir).is_empty(), "the cluster's processes work in {}", dir.display());

    // Ctrl-C: SIGINT to the whole foreground process group.
    let mark = text().len();
    let sent = Instant::now();
    let status = Command::new("kill").args(["-INT", "--", &format!("-{pgid}")]).status().unwrap();
    assert!(status.success());
    let exit = loop {
        if let Ok(Some(status)) = script.try_wait() {
            break status;
        }
        if sent.elapsed() > BOUND + Duration::from_secs(30) {
            panic!("run-local still running {:?} after Ctrl-C:\n{}", sent.elapsed(), &text()[mark..]);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = sent.elapsed();
    // What the script started may outlive it only by a moment (reaped by init).
    let deadline = Instant::now() + Duration::from_secs(1);
    while pids.iter().any(|(_, pid)| running(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = text()[mark..].to_owned();
    eprintln!("Ctrl-C → run-local ended in {took:?} ({exit}); its output meanwhile:\n{after}");
    assert!(took <= BOUND, "run-local took {took:?} to stop:\n{after}");
    let left: Vec<&(String, u32)> = pids.iter().filter(|(_, pid)| running(*pid)).collect();
    assert!(left.is_empty(), "still running after run-local ended: {left:?}");
    let strays = working_in(&dir);
    assert!(strays.is_empty(), "processes of the local cluster left: {strays:?}");
    for member in &members {
        let strays = working_in(member);
        assert!(strays.is_empty(), "processes of member {} left: {strays:?}", member.display());
    }
    let etcd_lines = after.lines().filter(|l| l.to_lowercase().contains("etcd")).count();
    assert!(etcd_lines <= 2, "{etcd_lines} lines about etcd after Ctrl-C:\n{after}");
    let warnings = after.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).count();
    assert!(warnings <= 2, "{warnings} warnings after Ctrl-C:\n{after}");
    assert_eq!(exit.code(), Some(130), "run-local's exit status after Ctrl-C");
}

/// The console's address and 南京's token, as run-local prints them, log in: the session sees
/// 南京's systems and no other city's.
fn console_login_as_printed(out: &str, dir: &std::path::Path) {
    let after = |label: &str| -> String {
        let line = out.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{out}"));
        line.split_whitespace().last().unwrap().to_owned()
    };
    let url = out
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with("/console/"))
        .unwrap_or_else(|| panic!("no console URL:\n{out}"));
    let token = after("南京市 operator token:");
    let addr: std::net::SocketAddr =
        url.trim_start_matches("https://").trim_end_matches("/console/").parse().expect("a loopback address");
    let ca = std::fs::read_to_string(dir.join("pki/ca.crt")).unwrap();
    let caller =
        suyun_tests::https::Caller { addr, tls: suyun_tests::https::client_config(&ca, None).unwrap(), token: None };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let form = format!("token={token}");
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        let login = caller.send(http::Method::POST, "/console/login", &headers, form.into_bytes()).await.unwrap();
        assert_eq!(login.status, http::StatusCode::SEE_OTHER, "{}", login.text());
        let cookie = login.header("set-cookie").expect("a session cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let page = suyun_tests::eventually(Duration::from_secs(60), || async {
            let page = caller.get_with("/console/systems", &[("cookie", &cookie)]).await?;
            anyhow::ensure!(page.status == http::StatusCode::OK, "{} {}", page.status, page.text());
            anyhow::ensure!(page.text().contains("JS-320100-"), "no 南京 system yet");
            Ok(page.text())
        })
        .await
        .unwrap();
        assert!(!page.contains("JS-320500-"), "南京's console shows 苏州's systems");
    });
}
