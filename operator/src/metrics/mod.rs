//! Prometheus metrics of the operator: their own registry, served on their own plain-HTTP
//! listener (`--metrics-listen`) by every replica, leader or standby ([`server`]).
//!
//! ```text
//!  CloudNode controller ── observe_node ─────────────────┐
//!  migration loop ── observe_loop, observe_plan, ────────┤
//!                    observe_transition, observe_publish ├─► Metrics ─► GET /metrics
//!  every controller ── observe_reconcile ────────────────┤   (registry)
//!  run ── suyun_leader, readiness ───────────────────────┘             GET /healthz, /readyz
//! ```
//!
//! Gauges that describe state are recomputed from what the controllers and the loop hold (see
//! [`state`]) and replace the label sets they wrote before, so a deleted node, wave or tenant
//! disappears from the scrape and a new leader reports correct values at once. Only the leader
//! writes them; a standby exports `suyun_leader 0` and no state. Counters and histograms count
//! what this process did as leader. No metric has a per-system label.
//!
//! Units are base units: cpu in cores, memory and storage in bytes (`unit` label `core` or
//! `byte`), times in seconds, timestamps in Unix seconds, shares as ratios (1 = 100 %).

pub mod server;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use suyun_crds::v1alpha1::{CloudNode, CloudNodeStatus, GovSystemStatus, Phase};

pub use server::{Readiness, router, serve};

/// Buckets of `suyun_phase_duration_seconds`: half a second (Simulated waves compress time) to
/// two days (replicating a large data volume).
const PHASE_BUCKETS: [f64; 16] =
    [0.5, 1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 172800.0];
/// Buckets of `suyun_planner_run_duration_seconds`.
const PLANNER_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets of `suyun_reconcile_duration_seconds` (a migration-loop iteration over 7,900
/// systems takes seconds).
const RECONCILE_BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of `suyun_member_probe_duration_seconds` (a probe times out after a few seconds).
const PROBE_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The `controller` label of the reconcile metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciler {
    /// The CloudNode controller.
    CloudNode,
    /// The Tenant controller.
    Tenant,
    /// The migration loop (one iteration is one reconcile).
    Migration,
}

impl Reconciler {
    /// Every controller.
    pub const ALL: [Reconciler; 3] = [Reconciler::CloudNode, Reconciler::Tenant, Reconciler::Migration];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reconciler::CloudNode => "cloudnode",
            Reconciler::Tenant => "tenant",
            Reconciler::Migration => "migration",
        }
    }
}

/// How one publish to the status store went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Committed, `lag` after the loop's snapshot of cluster state.
    Committed {
        /// Snapshot to commit.
        lag: Duration,
    },
    /// Failed; retried on the next iteration.
    Failed,
}

/// A gauge family whose label sets belong to owners (a node by name, or a single owner for a
/// family the loop rewrites whole): writing an owner's values removes the label sets it wrote
/// before and does not write again, so what left the state leaves the scrape.
#[derive(Debug)]
struct StateGauge {
    vec: GaugeVec,
    owned: Mutex<HashMap<String, BTreeSet<Vec<String>>>>,
}

/// The owner of the families the migration loop rewrites whole.
const WHOLE: &str = "";

impl StateGauge {
    fn new(name: &str, help: &str, labels: &[&str]) -> Self {
        Self { vec: GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"), owned: Mutex::default() }
    }

    /// Sets `owner`'s label sets to `values`, removing the ones it had and no longer has.
    fn replace(&self, owner: &str, values: impl IntoIterator<Item = (Vec<String>, f64)>) {
        let mut owned = self.owned.lock().expect("metrics lock is never poisoned");
        let mut now = BTreeSet::new();
        for (labels, value) in values {
            self.vec.with_label_values(&labels).set(value);
            now.insert(labels);
        }
        if let Some(before) = owned.get(owner) {
            for stale in before.difference(&now) {
                let _ = self.vec.remove_label_values(stale);
            }
        }
        owned.insert(owner.to_owned(), now);
    }

    /// Removes every label set of the owners `keep` refuses.
    fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut owned = self.owned.lock().expect("metrics lock is never poisoned");
        owned.retain(|owner, sets| {
            if keep(owner) {
                return true;
            }
            for labels in sets.iter() {
                let _ = self.vec.remove_label_values(labels);
            }
            false
        });
    }

    fn clear(&self) {
        self.owned.lock().expect("metrics lock is never poisoned").clear();
        self.vec.reset();
    }
}

/// Metrics of the status store, registered only with `--store-endpoints`.
#[derive(Debug)]
struct StoreMetrics {
    /// No labels: a vector so that the series is absent until the first publish.
    last_publish: GaugeVec,
    lag: GaugeVec,
    errors: IntCounter,
    journal_entries: IntCounter,
    journal_missed: IntCounter,
}

/// A collector shared between the registry and [`Metrics::exported_metric_names`].
struct Shared(Arc<dyn Collector>);

impl Collector for Shared {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// Every metric of the operator, in its own registry.
pub struct Metrics {
    registry: Registry,
    collectors: Vec<Arc<dyn Collector>>,
    readiness: AtomicU8,
    node_capacity: StateGauge,
    node_allocatable: StateGauge,
    node_allocated: StateGauge,
    node_utilization: StateGauge,
    node_ready: StateGauge,
    systems: StateGauge,
    wave_systems: StateGauge,
    systems_blocked: StateGauge,
    tenant_quota: StateGauge,
    tenant_usage: StateGauge,
    wave_progress: StateGauge,
    wave_eta: StateGauge,
    wave_active: StateGauge,
    wave_failure_budget: StateGauge,
    wave_last_transition: StateGauge,
    planner_unplaceable: StateGauge,
    city_budget: StateGauge,
    city_budget_used: StateGauge,
    city_budget_utilization: StateGauge,
    city_lending: StateGauge,
    tenant_borrowed: StateGauge,
    tenant_lent: StateGauge,
    residency_stranded: StateGauge,
    residency_waived: StateGauge,
    node_run_out: StateGauge,
    member_up: StateGauge,
    member_probe_duration: HistogramVec,
    member_probe_errors: IntCounterVec,
    completed: IntCounterVec,
    failed: IntCounterVec,
    rolled_back: IntCounterVec,
    phase_duration: HistogramVec,
    planner_duration: Histogram,
    planner_runs: IntCounter,
    reconciles: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_duration: HistogramVec,
    leader: IntGauge,
    store: Option<StoreMetrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("readiness", &self.readiness())
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

const NODE_RESOURCE: [&str; 5] = ["node", "region_code", "tier", "resource", "unit"];
const TENANT_RESOURCE: [&str; 4] = ["tenant", "region_code", "resource", "unit"];
const CITY_SHARE: [&str; 5] = ["city", "region_code", "node", "resource", "unit"];

impl Metrics {
    /// Registers every metric in a fresh registry; the status-store metrics only when
    /// `store_configured` (`--store-endpoints` set). `suyun_leader` starts at 0 and readiness at
    /// [`Readiness::Starting`].
    pub fn new(store_configured: bool) -> Metrics {
        let state = StateGauge::new;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid metric")
        };
        let mut m = Metrics {
            registry: Registry::new(),
            collectors: Vec::new(),
            readiness: AtomicU8::new(Readiness::Starting as u8),
            node_capacity: state(
                "suyun_node_capacity",
                "Effective capacity of a CloudNode (declared, or the sum of its Ready Nodes), before reservation and overcommit",
                &NODE_RESOURCE,
            ),
            node_allocatable: state(
                "suyun_node_allocatable",
                "Allocatable of a CloudNode: (capacity - reserved) x overcommit",
                &NODE_RESOURCE,
            ),
            node_allocated: state(
                "suyun_node_allocated",
                "Sum of the requests of the GovSystems holding capacity on a CloudNode, as its status shows",
                &NODE_RESOURCE,
            ),
            node_utilization: state(
                "suyun_node_utilization_ratio",
                "Allocated over allocatable of a CloudNode (0 when nothing is allocatable; above 1 when the node holds more than its allocatable)",
                &["node", "region_code", "tier", "resource"],
            ),
            node_ready: state(
                "suyun_node_ready",
                "1 when the CloudNode's Ready condition is True, else 0",
                &["node", "region_code", "tier"],
            ),
            systems: state(
                "suyun_systems",
                "GovSystems by phase and node (node and region_code empty for systems without a node)",
                &["node", "region_code", "phase"],
            ),
            wave_systems: state(
                "suyun_wave_systems",
                "GovSystems selected by a MigrationWave, by phase",
                &["wave", "phase"],
            ),
            systems_blocked: state(
                "suyun_systems_blocked",
                "GovSystems whose Blocked condition is True, by reason (planner reason codes, InvalidSpec, NotPlanned, Other)",
                &["reason"],
            ),
            tenant_quota: state("suyun_tenant_quota", "Resource quota of a Tenant", &TENANT_RESOURCE),
            tenant_usage: state(
                "suyun_tenant_usage",
                "Requests of a Tenant's GovSystems holding capacity",
                &TENANT_RESOURCE,
            ),
            wave_progress: state(
                "suyun_wave_progress_ratio",
                "Share of a MigrationWave's systems that are done (Completed or NotMigrated); 0 for a wave selecting no system",
                &["wave"],
            ),
            wave_eta: state(
                "suyun_wave_eta_timestamp_seconds",
                "Unix time the planner expects the wave's last system to finish (absent when unknown)",
                &["wave"],
            ),
            wave_active: state(
                "suyun_wave_active",
                "1 while the wave is Running: started, not paused, not finished",
                &["wave"],
            ),
            wave_failure_budget: state(
                "suyun_wave_failure_budget_ratio",
                "The wave's failure budget (spec.failureBudget percent / 100)",
                &["wave"],
            ),
            wave_last_transition: state(
                "suyun_wave_last_transition_timestamp_seconds",
                "Unix time of the last phase transition of any of the wave's systems (absent before the first)",
                &["wave"],
            ),
            planner_unplaceable: state(
                "suyun_planner_unplaceable_systems",
                "Systems the last planner run could not place, by the planner's reason code",
                &["reason"],
            ),
            city_budget: state(
                "suyun_city_budget",
                "What a CityBudget's departments may use of a CloudNode together (its node share)",
                &CITY_SHARE,
            ),
            city_budget_used: state(
                "suyun_city_budget_used",
                "What a CityBudget's departments use of its share of a CloudNode (systems holding capacity and newly placed)",
                &CITY_SHARE,
            ),
            city_budget_utilization: state(
                "suyun_city_budget_utilization_ratio",
                "Used over budget of a CityBudget's node share (0 for a zero budget nothing uses, 1 for a zero budget something uses; above 1 when running systems exceed a lowered budget)",
                &["city", "region_code", "node", "resource"],
            ),
            city_lending: state(
                "suyun_city_lending",
                "A CityBudget's departments in total: what they borrow from each other (kind=borrowed) and what they could lend (kind=lendable)",
                &["city", "region_code", "resource", "unit", "kind"],
            ),
            tenant_borrowed: state(
                "suyun_tenant_borrowed",
                "Use of a Tenant in a CityBudget beyond its quota, borrowed from its city's other departments",
                &TENANT_RESOURCE,
            ),
            tenant_lent: state(
                "suyun_tenant_lent",
                "Unused quota of a Tenant in a CityBudget lent to its city's other departments",
                &TENANT_RESOURCE,
            ),
            residency_stranded: state(
                "suyun_residency_stranded_systems",
                "GovSystems running on a node their data-residency rule forbids, without a waiver, by rule (the built-in rule always listed)",
                &["rule"],
            ),
            residency_waived: state(
                "suyun_residency_waived_systems",
                "GovSystems placed outside their data-residency rule under a recorded waiver, by rule (the built-in rule always listed)",
                &["rule"],
            ),
            node_run_out: state(
                "suyun_node_run_out_timestamp_seconds",
                "Unix time a CloudNode's use of a resource is forecast to exceed its allocatable, at the planned migration pace and --forecast-growth-percent a year (absent when not within --forecast-horizon-days)",
                &["node", "region_code", "resource"],
            ),
            member_up: state(
                "suyun_member_up",
                "1 while the member cluster behind a CloudNode counts as reachable (its API server answered one of the last 3 probes), else 0",
                &["node", "region_code"],
            ),
            member_probe_duration: histogram(
                "suyun_member_probe_duration_seconds",
                "Time a reachability probe (GET /version) of a member cluster's API server took, failed ones included",
                &PROBE_BUCKETS,
                &["node"],
            ),
            member_probe_errors: counter(
                "suyun_member_probe_errors_total",
                "Reachability probes of a member cluster that failed or timed out",
                &["node"],
            ),
            completed: counter(
                "suyun_migrations_completed_total",
                "GovSystems this leader moved into Completed",
                &["wave"],
            ),
            failed: counter("suyun_migrations_failed_total", "GovSystems this leader moved into Failed", &["wave"]),
            rolled_back: counter(
                "suyun_migrations_rolled_back_total",
                "GovSystems this leader moved into RolledBack",
                &["wave"],
            ),
            phase_duration: histogram(
                "suyun_phase_duration_seconds",
                "Time a GovSystem spent in a phase, observed when it leaves the phase",
                &PHASE_BUCKETS,
                &["phase"],
            ),
            planner_duration: Histogram::with_opts(
                HistogramOpts::new("suyun_planner_run_duration_seconds", "Time one planner run took")
                    .buckets(PLANNER_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            planner_runs: IntCounter::new("suyun_planner_runs_total", "Planner runs").expect("valid metric"),
            reconciles: counter("suyun_reconcile_total", "Reconciles by controller", &["controller"]),
            reconcile_errors: counter(
                "suyun_reconcile_errors_total",
                "Reconciles that failed (for the migration loop: an iteration with a failed write)",
                &["controller"],
            ),
            reconcile_duration: histogram(
                "suyun_reconcile_duration_seconds",
                "Time one reconcile took, by controller",
                &RECONCILE_BUCKETS,
                &["controller"],
            ),
            leader: IntGauge::new("suyun_leader", "1 while this replica holds the leader Lease, else 0")
                .expect("valid metric"),
            store: store_configured.then(|| StoreMetrics {
                last_publish: GaugeVec::new(
                    Opts::new(
                        "suyun_store_last_publish_timestamp_seconds",
                        "Unix time of the last successful publish to the status store",
                    ),
                    &[],
                )
                .expect("valid metric"),
                lag: GaugeVec::new(
                    Opts::new(
                        "suyun_store_publish_lag_seconds",
                        "Seconds from the migration loop's snapshot of cluster state to its publish being committed",
                    ),
                    &[],
                )
                .expect("valid metric"),
                errors: IntCounter::new(
                    "suyun_store_publish_errors_total",
                    "Publishes to the status store that failed",
                )
                .expect("valid metric"),
                journal_entries: IntCounter::new(
                    "suyun_journal_entries_total",
                    "Entries appended to the transition journal (closing entries of deleted systems included)",
                )
                .expect("valid metric"),
                journal_missed: IntCounter::new(
                    "suyun_journal_missed_transitions_total",
                    "Transitions that could not be journaled: more happened during a status-store outage than a status keeps",
                )
                .expect("valid metric"),
            }),
        };
        let mut collectors: Vec<Arc<dyn Collector>> = vec![
            Arc::new(m.node_capacity.vec.clone()),
            Arc::new(m.node_allocatable.vec.clone()),
            Arc::new(m.node_allocated.vec.clone()),
            Arc::new(m.node_utilization.vec.clone()),
            Arc::new(m.node_ready.vec.clone()),
            Arc::new(m.systems.vec.clone()),
            Arc::new(m.wave_systems.vec.clone()),
            Arc::new(m.systems_blocked.vec.clone()),
            Arc::new(m.tenant_quota.vec.clone()),
            Arc::new(m.tenant_usage.vec.clone()),
            Arc::new(m.wave_progress.vec.clone()),
            Arc::new(m.wave_eta.vec.clone()),
            Arc::new(m.wave_active.vec.clone()),
            Arc::new(m.wave_failure_budget.vec.clone()),
            Arc::new(m.wave_last_transition.vec.clone()),
            Arc::new(m.planner_unplaceable.vec.clone()),
            Arc::new(m.city_budget.vec.clone()),
            Arc::new(m.city_budget_used.vec.clone()),
            Arc::new(m.city_budget_utilization.vec.clone()),
            Arc::new(m.city_lending.vec.clone()),
            Arc::new(m.tenant_borrowed.vec.clone()),
            Arc::new(m.tenant_lent.vec.clone()),
            Arc::new(m.residency_stranded.vec.clone()),
            Arc::new(m.residency_waived.vec.clone()),
            Arc::new(m.node_run_out.vec.clone()),
            Arc::new(m.member_up.vec.clone()),
            Arc::new(m.member_probe_duration.clone()),
            Arc::new(m.member_probe_errors.clone()),
            Arc::new(m.completed.clone()),
            Arc::new(m.failed.clone()),
            Arc::new(m.rolled_back.clone()),
            Arc::new(m.phase_duration.clone()),
            Arc::new(m.planner_duration.clone()),
            Arc::new(m.planner_runs.clone()),
            Arc::new(m.reconciles.clone()),
            Arc::new(m.reconcile_errors.clone()),
            Arc::new(m.reconcile_duration.clone()),
            Arc::new(m.leader.clone()),
        ];
        if let Some(store) = &m.store {
            collectors.push(Arc::new(store.last_publish.clone()));
            collectors.push(Arc::new(store.lag.clone()));
            collectors.push(Arc::new(store.errors.clone()));
            collectors.push(Arc::new(store.journal_entries.clone()));
            collectors.push(Arc::new(store.journal_missed.clone()));
        }
        #[cfg(target_os = "linux")]
        collectors.push(Arc::new(prometheus::process_collector::ProcessCollector::for_self()));
        for c in &collectors {
            m.registry.register(Box::new(Shared(c.clone()))).expect("metric names are unique");
        }
        m.collectors = collectors;
        // The per-controller counters exist from the start, so that rate() sees their first
        // increment.
        for r in Reconciler::ALL {
            m.reconciles.with_label_values(&[r.as_str()]);
            m.reconcile_errors.with_label_values(&[r.as_str()]);
        }
        m
    }

    /// Every metric name the operator can export: each family registered (the status-store
    /// ones only when configured), with `_bucket`, `_sum` and `_count` for histograms, derived
    /// from the collectors' descriptors and types, sorted.
    pub fn exported_metric_names(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for c in &self.collectors {
            let types: HashMap<String, MetricType> =
                c.collect().into_iter().map(|f| (f.name().to_owned(), f.get_field_type())).collect();
            for desc in c.desc() {
                let name = desc.fq_name.clone();
                match types.get(&name) {
                    Some(MetricType::HISTOGRAM) => {
                        for suffix in ["_bucket", "_sum", "_count"] {
                            names.insert(format!("{name}{suffix}"));
                        }
                    }
                    Some(MetricType::SUMMARY) => {
                        names.insert(format!("{name}_sum"));
                        names.insert(format!("{name}_count"));
                        names.insert(name);
                    }
                    _ => {
                        names.insert(name);
                    }
                }
            }
        }
        names.into_iter().collect()
    }

    /// The text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// The registry (for tests and benchmarks).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What `/readyz` reports.
    pub fn readiness(&self) -> Readiness {
        Readiness::from_u8(self.readiness.load(Ordering::Relaxed))
    }

    /// Sets what `/readyz` reports.
    pub fn set_readiness(&self, readiness: Readiness) {
        self.readiness.store(readiness as u8, Ordering::Relaxed);
    }

    /// Sets `suyun_leader`.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Forgets every state gauge (on losing leadership: a standby exports no stale state).
    pub fn clear_state(&self) {
        for g in self.state_gauges() {
            g.clear();
        }
        if let Some(store) = &self.store {
            store.last_publish.reset();
            store.lag.reset();
        }
    }

    fn state_gauges(&self) -> [&StateGauge; 26] {
        [
            &self.node_capacity,
            &self.node_allocatable,
            &self.node_allocated,
            &self.node_utilization,
            &self.node_ready,
            &self.systems,
            &self.wave_systems,
            &self.systems_blocked,
            &self.tenant_quota,
            &self.tenant_usage,
            &self.wave_progress,
            &self.wave_eta,
            &self.wave_active,
            &self.wave_failure_budget,
            &self.wave_last_transition,
            &self.planner_unplaceable,
            &self.city_budget,
            &self.city_budget_used,
            &self.city_budget_utilization,
            &self.city_lending,
            &self.tenant_borrowed,
            &self.tenant_lent,
            &self.residency_stranded,
            &self.residency_waived,
            &self.node_run_out,
            &self.member_up,
        ]
    }

    /// Counts one reachability probe of the member cluster behind CloudNode `node` and sets
    /// whether it counts as reachable now.
    pub fn observe_member_probe(&self, node: &str, region_code: &str, took: Duration, ok: bool, reachable: bool) {
        self.member_probe_duration.with_label_values(&[node]).observe(took.as_secs_f64());
        if !ok {
            self.member_probe_errors.with_label_values(&[node]).inc();
        }
        self.set_member_up(node, region_code, reachable);
    }

    /// Sets `suyun_member_up` of the member behind CloudNode `node` (0 too for a member the
    /// operator has no credentials for: nothing is probed, and it is not up).
    pub fn set_member_up(&self, node: &str, region_code: &str, up: bool) {
        self.member_up.replace(node, [(vec![node.to_owned(), region_code.to_owned()], f64::from(u8::from(up)))]);
    }

    /// Removes `suyun_member_up` of every member not in `live`.
    pub fn retain_members(&self, live: &std::collections::HashSet<String>) {
        self.member_up.retain(|owner| live.contains(owner));
    }

    /// Sets the node gauges of `node` from the status the CloudNode controller built for it.
    pub fn observe_node(&self, node: &CloudNode, status: &CloudNodeStatus) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let n = state::node(node, status);
        self.node_capacity.replace(&name, n.capacity);
        self.node_allocatable.replace(&name, n.allocatable);
        self.node_allocated.replace(&name, n.allocated);
        self.node_utilization.replace(&name, n.utilization);
        self.node_ready.replace(&name, [n.ready]);
    }

    /// Removes the node gauges of every node not in `live`.
    pub fn retain_nodes(&self, live: &std::collections::HashSet<String>) {
        for g in [
            &self.node_capacity,
            &self.node_allocatable,
            &self.node_allocated,
            &self.node_utilization,
            &self.node_ready,
        ] {
            g.retain(|owner| live.contains(owner));
        }
    }

    /// Rewrites the systems, waves, tenants, city-budget and residency gauges from one
    /// migration-loop iteration.
    pub fn observe_loop(&self, input: &state::LoopState<'_>) {
        let s = state::of_loop(input);
        self.systems.replace(WHOLE, s.systems);
        self.wave_systems.replace(WHOLE, s.wave_systems);
        self.systems_blocked.replace(WHOLE, s.blocked);
        self.tenant_quota.replace(WHOLE, s.tenant_quota);
        self.tenant_usage.replace(WHOLE, s.tenant_usage);
        self.wave_progress.replace(WHOLE, s.wave_progress);
        self.wave_eta.replace(WHOLE, s.wave_eta);
        self.wave_active.replace(WHOLE, s.wave_active);
        self.wave_failure_budget.replace(WHOLE, s.wave_failure_budget);
        self.wave_last_transition.replace(WHOLE, s.wave_last_transition);
        self.city_budget.replace(WHOLE, s.city_budget);
        self.city_budget_used.replace(WHOLE, s.city_budget_used);
        self.city_budget_utilization.replace(WHOLE, s.city_budget_utilization);
        self.city_lending.replace(WHOLE, s.city_lending);
        self.tenant_borrowed.replace(WHOLE, s.tenant_borrowed);
        self.tenant_lent.replace(WHOLE, s.tenant_lent);
        self.residency_stranded.replace(WHOLE, s.residency_stranded);
        self.residency_waived.replace(WHOLE, s.residency_waived);
        self.node_run_out.replace(WHOLE, s.node_run_out);
        // The counters of every wave exist from the start, so that increase() sees the first
        // migration that completes.
        for wave in &s.waves {
            for c in [&self.completed, &self.failed, &self.rolled_back] {
                c.with_label_values(&[wave.as_str()]);
            }
        }
    }

    /// Counts one planner run and keeps its unplaceable systems by reason.
    pub fn observe_plan(&self, took: Duration, plan: &suyun_planner::Plan) {
        self.planner_runs.inc();
        self.planner_duration.observe(took.as_secs_f64());
        self.planner_unplaceable.replace(WHOLE, state::unplaceable(&plan.reasons));
    }

    /// Counts a status the loop wrote: a migration moved into Completed, Failed or RolledBack,
    /// and the time spent in the phase it left (when the phase changed).
    pub fn observe_transition(&self, wave: Option<&str>, from: &GovSystemStatus, to: &GovSystemStatus, now: i64) {
        let (before, after) = (from.phase.unwrap_or_default(), to.phase.unwrap_or_default());
        if before == after {
            return;
        }
        let wave = wave.unwrap_or_default();
        match after {
            Phase::Completed => self.completed.with_label_values(&[wave]).inc(),
            Phase::Failed => self.failed.with_label_values(&[wave]).inc(),
            Phase::RolledBack => self.rolled_back.with_label_values(&[wave]).inc(),
            _ => {}
        }
        if let Some(started) = &from.phase_started_at {
            let seconds = (now - started.0.as_second()).max(0);
            self.phase_duration.with_label_values(&[before.as_str()]).observe(seconds as f64);
        }
    }

    /// Starts timing one reconcile of `controller`: every controller's reconciles are counted
    /// through this guard ([`ReconcileTimer::observe`]); a reconcile cancelled before it
    /// ended (shutdown) is not counted.
    pub fn time_reconcile(&self, controller: Reconciler) -> ReconcileTimer<'_> {
        ReconcileTimer { metrics: self, controller, started: std::time::Instant::now() }
    }

    /// Records one reconcile that took `took` (see [`Metrics::time_reconcile`]).
    pub fn observe_reconcile(&self, controller: Reconciler, took: Duration, failed: bool) {
        let label = [controller.as_str()];
        self.reconciles.with_label_values(&label).inc();
        if failed {
            self.reconcile_errors.with_label_values(&label).inc();
        }
        self.reconcile_duration.with_label_values(&label).observe(took.as_secs_f64());
    }

    /// Records one publish to the status store (no-op without `--store-endpoints`).
    pub fn observe_publish(&self, outcome: PublishOutcome, now: i64) {
        let Some(store) = &self.store else { return };
        match outcome {
            PublishOutcome::Committed { lag } => {
                store.last_publish.with_label_values::<&str>(&[]).set(now as f64);
                store.lag.with_label_values::<&str>(&[]).set(lag.as_secs_f64());
            }
            PublishOutcome::Failed => store.errors.inc(),
        }
    }
}

impl Metrics {
    /// Records what the journal appended and recorded as lost (no-op without a store).
    pub fn observe_journal(&self, appended: usize, missed: u64) {
        let Some(store) = &self.store else { return };
        store.journal_entries.inc_by(appended as u64);
        store.journal_missed.inc_by(missed);
    }
}

/// Every metric name the operator can export (status-store metrics included), with the
/// `_bucket`/`_sum`/`_count` series of histograms: for checking alert rules and dashboards.
pub fn exported_metric_names() -> Vec<String> {
    Metrics::new(true).exported_metric_names()
}

/// One reconcile being timed; see [`Metrics::time_reconcile`].
#[derive(Debug)]
#[must_use = "a reconcile is counted when the timer observes how it ended"]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: Reconciler,
    started: std::time::Instant,
}

impl ReconcileTimer<'_> {
    /// Counts the reconcile, failed or not, with the time since the timer started.
    pub fn observe(self, failed: bool) {
        self.metrics.observe_reconcile(self.controller, self.started.elapsed(), failed);
    }
}

#[cfg(test)]
mod tests;
