//! Criterion benchmarks of the operator's metrics at Jiangsu scale (14 nodes, 7,900 systems,
//! the tenants and waves of the synthetic dataset): encoding one scrape, against a baseline
//! measured in the same run (a registry holding as many series as plain counters), and the
//! migration loop's per-iteration update. See docs/benchmarks.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, GovSystemStatus, MigrationWave, Phase, Tenant};
use suyun_operator::accounts;
use suyun_operator::cloud_node::status::{self, Observed};
use suyun_operator::metrics::state::LoopState;
use suyun_operator::metrics::{Metrics, PublishOutcome, Reconciler};
use suyun_operator::migration::waves;
use suyun_planner::model;
use suyun_planner::synthetic::{self, NOW};

/// The synthetic Jiangsu province as the operator's caches would hold it mid-migration.
struct Province {
    nodes: Vec<Arc<CloudNode>>,
    tenants: Vec<Arc<Tenant>>,
    systems: Vec<Arc<GovSystem>>,
    statuses: Vec<GovSystemStatus>,
    waves: Vec<Arc<MigrationWave>>,
    wave_of: Vec<Option<String>>,
    plan: suyun_planner::Plan,
}

fn typed<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("the synthetic objects are valid")
}

fn amounts(cpu_milli: u64, memory: u64, storage: u64) -> serde_json::Value {
    json!({"cpu": format!("{cpu_milli}m"), "memory": memory.to_string(), "storage": storage.to_string()})
}

fn at(seconds: i64) -> Option<Time> {
    Some(Time(Timestamp::from_second(seconds).expect("a valid time")))
}

/// Phases of placed systems, in a mix a busy migration day shows.
const MIX: [Phase; 10] = [
    Phase::Scheduled,
    Phase::Scheduled,
    Phase::Scheduled,
    Phase::Provisioning,
    Phase::Replicating,
    Phase::AwaitingCutover,
    Phase::CuttingOver,
    Phase::Verifying,
    Phase::Completed,
    Phase::Completed,
];

fn province() -> Province {
    let input = synthetic::jiangsu(1);
    let plan = suyun_planner::plan(&input);
    let nodes: Vec<Arc<CloudNode>> = input
        .nodes
        .iter()
        .map(|n| {
            let a = n.allocatable;
            Arc::new(typed(json!({
                "apiVersion": "suyun.io/v1alpha1", "kind": "CloudNode", "metadata": {"name": n.name, "generation": 1},
                "spec": {"tier": n.tier, "regionCode": n.region_code, "displayName": n.display_name,
                         "parent": n.parent, "capacity": amounts(a.cpu, a.memory, a.storage),
                         "securityLevel": n.security_level, "maxConcurrentMigrations": n.max_concurrent_migrations,
                         "migrationBandwidthMbps": n.migration_bandwidth_mbps}
            })))
        })
        .collect();
    let tenants: Vec<Arc<Tenant>> = input
        .tenants
        .iter()
        .map(|t| {
            let q = &t.quota;
            let mut quota = amounts(q.cpu, q.memory, q.storage);
            quota["maxSystems"] = json!(q.max_systems);
            Arc::new(typed(json!({
                "apiVersion": "suyun.io/v1alpha1", "kind": "Tenant", "metadata": {"name": t.name},
                "spec": {"displayName": t.display_name, "level": t.level, "regionCode": t.region_code,
                         "homeNode": t.home_node, "quota": quota, "securityLevel": t.security_level}
            })))
        })
        .collect();
    let waves: Vec<Arc<MigrationWave>> = input
        .waves
        .iter()
        .map(|w| {
            Arc::new(typed(json!({
                "apiVersion": "suyun.io/v1alpha1", "kind": "MigrationWave", "metadata": {"name": w.name},
                "spec": {"selector": {"matchLabels": {"suyun.io/wave": w.name}}, "order": w.order,
                         "failureBudget": 5, "executor": "Simulated"}
            })))
        })
        .collect();
    let placed: HashMap<&str, &str> =
        plan.assignments.iter().map(|a| (a.system_id.as_str(), a.node.as_str())).collect();
    let blocked: HashMap<&str, &str> =
        plan.unplaceable.iter().map(|u| (u.system_id.as_str(), u.reason.as_str())).collect();
    let mut systems = Vec::with_capacity(input.systems.len());
    let mut statuses = Vec::with_capacity(input.systems.len());
    for (i, s) in input.systems.iter().enumerate() {
        let r = s.resources;
        let labels = s.wave.as_ref().map(|w| json!({"suyun.io/wave": w})).unwrap_or(json!({}));
        systems.push(Arc::new(typed::<GovSystem>(json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "GovSystem",
            "metadata": {"name": s.system_id.to_lowercase(), "namespace": s.tenant, "labels": labels},
            "spec": {"systemId": s.system_id, "displayName": s.display_name, "classification": "Internal",
                     "securityLevel": s.security_level, "resources": amounts(r.cpu, r.memory, r.storage)}
        }))));
        let mut status = GovSystemStatus { phase_started_at: at(NOW - (i as i64 % 7200)), ..Default::default() };
        if s.strategy == model::Strategy::Retire || s.strategy == model::Strategy::Retain {
            status.phase = Some(Phase::NotMigrated);
        } else if let Some(node) = placed.get(s.system_id.as_str()) {
            status.phase = Some(MIX[i % MIX.len()]);
            status.node = Some((*node).to_owned());
        } else if let Some(reason) = blocked.get(s.system_id.as_str()) {
            status.phase = Some(Phase::Blocked);
            status.reason = Some((*reason).to_owned());
            status.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Blocked".into(),
                status: "True".into(),
                reason: (*reason).to_owned(),
                message: String::new(),
                last_transition_time: Time(Timestamp::from_second(NOW).expect("a valid time")),
                observed_generation: None,
            }];
        }
        statuses.push(status);
    }
    let wave_of =
        systems.iter().map(|s| suyun_operator::plan_input::wave_of(s, &waves).map(|w| w.name_any())).collect();
    Province { nodes, tenants, systems, statuses, waves, wave_of, plan }
}

/// What the migration loop and the CloudNode controller compute anyway, before they update the
/// metrics: wave states, accounts, node statuses.
struct Derived {
    waves: std::collections::BTreeMap<String, waves::WaveState>,
    accounts: accounts::Accounts,
    node_statuses: Vec<suyun_crds::v1alpha1::CloudNodeStatus>,
}

fn derive(p: &Province) -> Derived {
    let waves = waves::wave_states(&p.waves, &waves::members(&p.wave_of, &p.statuses), NOW);
    let accounts = accounts::compute(p.systems.iter().map(Arc::as_ref).zip(p.statuses.iter()), &p.tenants);
    let now = Time(Timestamp::from_second(NOW).expect("a valid time"));
    let node_statuses = p
        .nodes
        .iter()
        .map(|node| {
            let observed = Observed {
                cloud_nodes: &p.nodes,
                nodes: vec![],
                account: accounts.nodes.get(&node.name_any()).cloned().unwrap_or_default(),
                pressure_threshold: 85.0,
                member: None,
            };
            status::build(node, &observed, &now)
        })
        .collect();
    Derived { waves, accounts, node_statuses }
}

/// The metrics' share of one migration-loop iteration and one reconcile of every CloudNode.
fn observe(metrics: &Metrics, p: &Province, d: &Derived) {
    metrics.observe_loop(&LoopState {
        cloud_nodes: &p.nodes,
        tenants: &p.tenants,
        systems: &p.systems,
        statuses: &p.statuses,
        wave_of: &p.wave_of,
        waves: &d.waves,
        accounts: &d.accounts,
        plan: &p.plan,
        run_out: &[],
    });
    for (node, status) in p.nodes.iter().zip(&d.node_statuses) {
        metrics.observe_node(node, status);
    }
}

/// The operator's metrics filled at Jiangsu scale: every state family, the counters and
/// histograms after one transition of every moving system, a day of reconciles.
fn filled(p: &Province, d: &Derived) -> Metrics {
    let metrics = Metrics::new(true);
    metrics.set_leader(true);
    observe(&metrics, p, d);
    metrics.observe_plan(Duration::from_millis(180), &p.plan);
    for (i, st) in p.statuses.iter().enumerate() {
        let phase = st.phase.unwrap_or_default();
        if let Some(before) = MIX.iter().position(|m| *m == phase).filter(|k| *k > 0).map(|k| MIX[k - 1]) {
            let from = GovSystemStatus { phase: Some(before), phase_started_at: at(NOW - 3600), ..st.clone() };
            metrics.observe_transition(p.wave_of[i].as_deref(), &from, st, NOW - (i as i64 % 3000));
        }
    }
    for (k, r) in Reconciler::ALL.iter().cycle().take(3000).enumerate() {
        metrics.observe_reconcile(*r, Duration::from_micros(200 + k as u64 * 37 % 90_000), k % 97 == 0);
    }
    metrics.observe_publish(PublishOutcome::Committed { lag: Duration::from_millis(40) }, NOW);
    metrics
}

/// A registry of `series` plain counters, one family.
fn baseline(series: usize) -> Registry {
    let registry = Registry::new();
    let counters = IntCounterVec::new(Opts::new("baseline_total", "Plain counters"), &["series"]).expect("valid");
    for i in 0..series {
        counters.with_label_values(&[i.to_string().as_str()]).inc_by(i as u64);
    }
    registry.register(Box::new(counters)).expect("one family");
    registry
}

fn encode(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * 1024);
    TextEncoder::new().encode(&registry.gather(), &mut out).expect("text encoding cannot fail");
    out
}

/// Median time of one call over 15 batches of `calls`.
fn per_call(calls: u32, mut f: impl FnMut()) -> Duration {
    let mut batches: Vec<Duration> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed() / calls
        })
        .collect();
    batches.sort();
    batches[batches.len() / 2]
}

fn scrape(c: &mut Criterion) {
    let p = province();
    let d = derive(&p);
    let metrics = filled(&p, &d);
    let text = metrics.render();
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    let base = baseline(series);
    let operator_time = per_call(200, || {
        black_box(encode(metrics.registry()));
    });
    let baseline_time = per_call(200, || {
        black_box(encode(&base));
    });
    eprintln!(
        "[scrape] Jiangsu scale: {} nodes, {} tenants, {} systems, {} waves -> {series} series, {} bytes per scrape",
        p.nodes.len(),
        p.tenants.len(),
        p.systems.len(),
        p.waves.len(),
        text.len()
    );
    eprintln!(
        "[scrape] encode: operator {:?}, baseline ({series} plain counters) {:?}, ratio {:.2}",
        operator_time,
        baseline_time,
        operator_time.as_secs_f64() / baseline_time.as_secs_f64()
    );

    let mut group = c.benchmark_group("scrape");
    group.sample_size(50);
    group.bench_function("operator", |b| b.iter(|| encode(black_box(metrics.registry()))));
    group.bench_function("baseline_counters", |b| b.iter(|| encode(black_box(&base))));
    group.finish();

    let mut group = c.benchmark_group("update");
    group.sample_size(20);
    group.bench_function("loop_iteration", |b| b.iter(|| observe(black_box(&metrics), black_box(&p), &d)));
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
