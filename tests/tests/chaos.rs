//! The reduced chaos test (issue 12 §3): about 300 systems of the synthetic Jiangsu set migrate
//! (Simulated) under two operator replicas and a REST approval flow while the leader is killed
//! 20 times and paused twice, kube-apiserver and its etcd are restarted and the status-store
//! etcd is down for 30 s; the independent checker of `suyun_tests::chaos` must find nothing
//! lost, nothing done twice, no node overcommitted. A control plane of its own
//! (`target/chaos-cluster`), since components are restarted.
//!
//! `SUYUN_CHAOS_SEED=<n>` repeats a run's fault schedule (the seed is printed). The full run
//! (7,900 systems) is `tests/examples/chaos.rs`; see `docs/reliability.md`.

use suyun_tests::chaos::{Options, run};

#[test]
fn nothing_is_lost_or_done_twice_under_kills_pauses_and_outages() {
    let options = Options::reduced();
    let report = run(&options).unwrap_or_else(|e| panic!("the chaos run could not be carried out: {e:#}"));
    let summary = report.summary();
    eprintln!("{summary}");
    assert_eq!(report.violations.count(), 0, "the checker found violations:\n{summary}");
    let kills = report.faults.iter().filter(|f| f.fault == suyun_tests::chaos::Fault::Kill).count();
    assert!(kills >= 20, "{kills} kills injected:\n{summary}");
}
