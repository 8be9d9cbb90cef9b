//! Stopping is bounded: SIGTERM or SIGINT stops a leading operator within a few seconds even when
//! the status-store etcd or the kube-apiserver is unreachable (stopped: connections refused;
//! paused: connections hang), a second signal exits at once, and an operator started while the
//! kube-apiserver is down keeps retrying instead of exiting, and still stops on a signal.
//!
//! The test stops components, so it runs on a control plane of its own (`target/outage-stopping`).

use std::time::{Duration, Instant};

use suyun_crds::v1alpha1::{CloudNode, Tenant};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{Cluster, eventually, install_crds, repo_root, with_own_cluster};

/// What the test asserts; the operator aims at under 5 s.
const BOUND: Duration = Duration::from_secs(10);

async fn wait_log(operator: &OperatorProcess, text: &str, timeout: Duration) {
    eventually(timeout, || async {
        if operator.log_text().contains(text) { Ok(()) } else { anyhow::bail!("no {text:?} in the log yet") }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));
}

fn start(cluster: &Cluster, name: &str) -> OperatorProcess {
    let args = [
        "--lease-name=suyun-stopping".to_owned(),
        "--debounce-ms=100".to_owned(),
        format!("--store-endpoints={}", cluster.etcd_endpoints),
        "--store-prefix=/suyun-stopping".to_owned(),
    ];
    OperatorProcess::start(cluster, name, &args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap()
}

/// A leading operator holding the store fence, its migration loop running.
async fn leading(cluster: &Cluster, name: &str) -> OperatorProcess {
    let operator = start(cluster, name);
    // A predecessor that could not give the fence back leaves it to expire (10 s). The loop
    // starts before the fence is won (it migrates under the Lease meanwhile): wait for both.
    wait_log(&operator, "holding the status-store fence", Duration::from_secs(60)).await;
    wait_log(&operator, "migration loop started", Duration::from_secs(60)).await;
    operator
}

/// Sends `signal` and returns how long the process took to exit; asserts a clean exit within
/// [`BOUND`].
fn stop_and_measure(operator: &mut OperatorProcess, signal: &str, case: &str) -> Duration {
    let sent = Instant::now();
    operator.signal(signal);
    let status = operator.wait_exit(BOUND + Duration::from_secs(5));
    let took = sent.elapsed();
    eprintln!("{case}: SIG{signal} → exit in {took:?} ({status:?})");
    let status = status.unwrap_or_else(|| panic!("{case}: still running {took:?} after SIG{signal}"));
    assert!(took <= BOUND, "{case}: stopping took {took:?}\n{}", operator.log_text());
    assert!(status.success(), "{case}: exit status {status:?}\n{}", operator.log_text());
    took
}

#[test]
fn sigterm_and_sigint_stop_the_operator_within_seconds_whatever_is_unreachable() {
    let dir = repo_root().join("target/outage-stopping");
    with_own_cluster(&dir, false, |cluster| async move {
        let client = cluster.client().await?;
        install_crds(&client).await?;
        apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 100, 4)).await;
        apply::<Tenant>(&client, &fixtures::tenant("js-edu", "Provincial", "320000", "jiangsu", 10)).await;

        // 1. The status-store etcd stopped (connections refused).
        let mut a = leading(&cluster, "stop-a").await;
        cluster.component("stop", "etcd-store")?;
        wait_log(&a, "renewing the status-store lease failed", Duration::from_secs(30)).await;
        stop_and_measure(&mut a, "TERM", "status store stopped");
        cluster.component("start", "etcd-store")?;

        // 2. The status-store etcd paused (connections hang).
        let mut b = leading(&cluster, "stop-b").await;
        cluster.component("pause", "etcd-store")?;
        wait_log(&b, "renewing the status-store lease failed", Duration::from_secs(30)).await;
        stop_and_measure(&mut b, "INT", "status store paused");
        cluster.component("resume", "etcd-store")?;

        // 3. A second signal exits at once, while the first stop still waits on the paused store.
        let mut c = leading(&cluster, "stop-c").await;
        cluster.component("pause", "etcd-store")?;
        wait_log(&c, "renewing the status-store lease failed", Duration::from_secs(30)).await;
        c.signal("TERM");
        wait_log(&c, "stopping (a second SIGTERM or SIGINT exits at once)", Duration::from_secs(5)).await;
        let sent = Instant::now();
        c.signal("TERM");
        let status = c.wait_exit(Duration::from_secs(5)).expect("exits after a second signal");
        let took = sent.elapsed();
        eprintln!("second SIGTERM → exit in {took:?} ({status:?})");
        assert!(took <= Duration::from_secs(1), "a second signal took {took:?} to end the process");
        assert_eq!(status.code(), Some(143), "exit code after a second SIGTERM\n{}", c.log_text());
        assert!(c.log_text().contains("second signal: exiting at once"), "{}", c.log_text());
        cluster.component("resume", "etcd-store")?;

        // 4. The kube-apiserver stopped under a leader.
        let mut d = leading(&cluster, "stop-d").await;
        cluster.component("stop", "kube-apiserver")?;
        wait_log(&d, "renewing the leader Lease failed", Duration::from_secs(30)).await;
        stop_and_measure(&mut d, "INT", "kube-apiserver stopped");

        // 5. Started while the kube-apiserver is down: it retries instead of exiting, and stops.
        let mut e = start(&cluster, "stop-e");
        eventually(Duration::from_secs(30), || async {
            let retries = e.log_text().matches("cannot reach the Kubernetes API; retrying").count();
            if retries >= 3 { Ok(()) } else { anyhow::bail!("{retries} retries") }
        })
        .await?;
        assert!(e.running(), "an unreachable apiserver at start must not end the process:\n{}", e.log_text());
        stop_and_measure(&mut e, "TERM", "started without a kube-apiserver");
        cluster.component("start", "kube-apiserver")?;
        Ok(())
    })
    .unwrap();
}
