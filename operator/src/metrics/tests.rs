use std::collections::{BTreeMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use suyun_crds::v1alpha1::{CloudNode, CloudNodeStatus, GovSystemStatus, Phase};

use super::state;
use super::*;
use suyun_planner::explain::Reason;

/// Samples of a text exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v))))
        .collect()
}

fn families(text: &str) -> HashSet<String> {
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).map(Into::into).collect()
}

fn cloud_node(name: &str, tier: &str, code: &str) -> CloudNode {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "suyun.io/v1alpha1", "kind": "CloudNode", "metadata": {"name": name},
        "spec": {"tier": tier, "regionCode": code, "displayName": name, "securityLevel": 3,
                 "capacity": {"cpu": "100", "memory": "1Ti", "storage": "10Ti"}}
    }))
    .unwrap()
}

fn node_status(allocated_cpu: &str, ready: bool) -> CloudNodeStatus {
    let q = |s: &str| Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.into()));
    let amounts = |cpu: &str| suyun_crds::v1alpha1::ResourceAmounts {
        cpu: q(cpu),
        memory: q("1Ti"),
        storage: q("10Ti"),
        gpu: None,
    };
    CloudNodeStatus {
        capacity: Some(amounts("100")),
        allocatable: Some(amounts("200")),
        allocated: Some(amounts(allocated_cpu)),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            reason: "Reconciled".into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }],
        ..Default::default()
    }
}

#[test]
fn exported_names_cover_the_catalogue_with_histogram_series_and_follow_the_store_setting() {
    let names = exported_metric_names();
    for name in [
        "suyun_node_capacity",
        "suyun_node_allocatable",
        "suyun_node_allocated",
        "suyun_node_utilization_ratio",
        "suyun_node_ready",
        "suyun_systems",
        "suyun_wave_systems",
        "suyun_systems_blocked",
        "suyun_tenant_quota",
        "suyun_tenant_usage",
        "suyun_migrations_completed_total",
        "suyun_migrations_failed_total",
        "suyun_migrations_rolled_back_total",
        "suyun_phase_duration_seconds_bucket",
        "suyun_phase_duration_seconds_sum",
        "suyun_phase_duration_seconds_count",
        "suyun_wave_progress_ratio",
        "suyun_wave_eta_timestamp_seconds",
        "suyun_wave_active",
        "suyun_wave_failure_budget_ratio",
        "suyun_wave_last_transition_timestamp_seconds",
        "suyun_planner_run_duration_seconds_bucket",
        "suyun_planner_runs_total",
        "suyun_planner_unplaceable_systems",
        "suyun_city_budget",
        "suyun_city_budget_used",
        "suyun_city_budget_utilization_ratio",
        "suyun_city_lending",
        "suyun_tenant_borrowed",
        "suyun_tenant_lent",
        "suyun_residency_stranded_systems",
        "suyun_residency_waived_systems",
        "suyun_member_up",
        "suyun_member_probe_duration_seconds_bucket",
        "suyun_member_probe_errors_total",
        "suyun_reconcile_total",
        "suyun_reconcile_errors_total",
        "suyun_reconcile_duration_seconds_count",
        "suyun_leader",
        "suyun_store_last_publish_timestamp_seconds",
        "suyun_store_publish_lag_seconds",
        "suyun_store_publish_errors_total",
        "suyun_journal_entries_total",
        "suyun_journal_missed_transitions_total",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n == "suyun_phase_duration_seconds"), "a histogram's own name is not a series");
    #[cfg(target_os = "linux")]
    assert!(names.iter().any(|n| n == "process_resident_memory_bytes"), "{names:?}");
    let without_store = Metrics::new(false).exported_metric_names();
    assert!(!without_store.iter().any(|n| n.starts_with("suyun_store_")), "{without_store:?}");
    // Every family a scrape shows is listed.
    let m = Metrics::new(true);
    m.observe_publish(PublishOutcome::Committed { lag: Duration::from_millis(20) }, 1_800_000_000);
    for family in families(&m.render()) {
        let listed = names.iter().any(|n| *n == family || *n == format!("{family}_count"));
        assert!(listed, "{family} is exported but not listed");
    }
}

#[test]
fn node_gauges_follow_the_status_and_leave_with_the_node() {
    let m = Metrics::new(false);
    let nanjing = cloud_node("nanjing", "City", "320100");
    m.observe_node(&nanjing, &node_status("50", true));
    m.observe_node(&cloud_node("suzhou", "City", "320500"), &node_status("0", false));
    let s = samples(&m.render());
    // The encoder writes labels sorted by name.
    let key = |family: &str, labels: &str| format!("{family}{{{labels}}}");
    let nj = "node=\"nanjing\",region_code=\"320100\"";
    let (cpu, memory) = ("resource=\"cpu\",tier=\"city\"", "resource=\"memory\",tier=\"city\"");
    assert_eq!(s[&key("suyun_node_allocated", &format!("{nj},{cpu},unit=\"core\""))], 50.0);
    assert_eq!(s[&key("suyun_node_capacity", &format!("{nj},{memory},unit=\"byte\""))], 1099511627776.0);
    assert_eq!(s[&key("suyun_node_utilization_ratio", &format!("{nj},{cpu}"))], 0.25);
    assert_eq!(s[&key("suyun_node_ready", &format!("{nj},tier=\"city\""))], 1.0);
    assert_eq!(s[&key("suyun_node_ready", "node=\"suzhou\",region_code=\"320500\",tier=\"city\"")], 0.0);

    // A region change replaces the label set; a deleted node disappears.
    let mut moved = nanjing.clone();
    moved.spec.region_code = "320199".into();
    m.observe_node(&moved, &node_status("50", true));
    m.retain_nodes(&HashSet::from(["nanjing".to_owned()]));
    let text = m.render();
    assert!(!text.contains("320100") && !text.contains("suzhou"), "{text}");
    assert_eq!(text.matches("suyun_node_ready{").count(), 1, "{text}");
    m.clear_state();
    assert!(!m.render().contains("suyun_node_"), "a standby shows no node state");
}

#[test]
fn transitions_count_migrations_by_wave_and_time_the_phase_left() {
    let m = Metrics::new(false);
    let at = |s: i64| Some(Time(Timestamp::from_second(s).unwrap()));
    let verifying = GovSystemStatus { phase: Some(Phase::Verifying), phase_started_at: at(1000), ..Default::default() };
    let completed = GovSystemStatus { phase: Some(Phase::Completed), phase_started_at: at(1090), ..Default::default() };
    m.observe_transition(Some("wave-1"), &verifying, &completed, 1090);
    // Same phase (a retry, a new message): no transition.
    m.observe_transition(Some("wave-1"), &completed, &completed, 1200);
    let failed = GovSystemStatus { phase: Some(Phase::Failed), ..Default::default() };
    m.observe_transition(Some("wave-2"), &verifying, &failed, 1100);
    let s = samples(&m.render());
    assert_eq!(s["suyun_migrations_completed_total{wave=\"wave-1\"}"], 1.0);
    assert_eq!(s["suyun_migrations_failed_total{wave=\"wave-2\"}"], 1.0);
    assert_eq!(s["suyun_phase_duration_seconds_count{phase=\"Verifying\"}"], 2.0);
    assert_eq!(s["suyun_phase_duration_seconds_sum{phase=\"Verifying\"}"], 190.0);
    assert_eq!(s["suyun_phase_duration_seconds_bucket{phase=\"Verifying\",le=\"60\"}"], 0.0);
    assert_eq!(s["suyun_phase_duration_seconds_bucket{phase=\"Verifying\",le=\"300\"}"], 2.0);
}

#[test]
fn reconciles_leadership_and_publishes_are_counted() {
    let m = Metrics::new(true);
    let s = samples(&m.render());
    assert_eq!(s["suyun_reconcile_total{controller=\"migration\"}"], 0.0, "counters exist before the first");
    assert_eq!(s["suyun_leader"], 0.0);
    assert!(!s.keys().any(|k| k.starts_with("suyun_store_last_publish")), "no publish yet: absent, not 0");
    m.observe_reconcile(Reconciler::Tenant, Duration::from_millis(3), true);
    m.set_leader(true);
    m.observe_publish(PublishOutcome::Failed, 0);
    m.observe_publish(PublishOutcome::Committed { lag: Duration::from_millis(250) }, 1_800_000_000);
    let s = samples(&m.render());
    assert_eq!(s["suyun_reconcile_total{controller=\"tenant\"}"], 1.0);
    assert_eq!(s["suyun_reconcile_errors_total{controller=\"tenant\"}"], 1.0);
    assert_eq!(s["suyun_leader"], 1.0);
    assert_eq!(s["suyun_store_publish_errors_total"], 1.0);
    assert_eq!(s["suyun_store_publish_lag_seconds"], 0.25);
    assert_eq!(s["suyun_store_last_publish_timestamp_seconds"], 1.8e9);
}

#[test]
fn reason_labels_are_bounded() {
    assert_eq!(state::blocked_reason("InsufficientCapacity"), "InsufficientCapacity");
    assert_eq!(state::blocked_reason("InvalidSpec"), "InvalidSpec");
    assert_eq!(state::blocked_reason("anything a user could write"), "Other");
    // The governance reasons come with Reason::ALL.
    assert_eq!(state::blocked_reason("CityBudgetExceeded"), "CityBudgetExceeded");
    assert_eq!(state::blocked_reason("ResidencyViolation"), "ResidencyViolation");
    assert_eq!(state::blocked_reasons().count(), Reason::ALL.len() + 3);
}

#[test]
fn utilization_is_zero_without_allocatable() {
    assert_eq!(state::ratio(5, 0), 0.0);
    assert_eq!(state::ratio(0, 0), 0.0);
    assert_eq!(state::ratio(1, 4), 0.25);
}

#[test]
fn a_zero_city_budget_is_empty_until_something_uses_it() {
    assert_eq!(state::budget_ratio(0, 0), 0.0);
    assert_eq!(state::budget_ratio(1, 0), 1.0, "use of a zero budget: all of it, as the planner says");
    assert_eq!(state::budget_ratio(3, 4), 0.75);
    assert_eq!(state::budget_ratio(6, 4), 1.5, "running systems above a lowered budget");
}

#[tokio::test]
async fn readyz_follows_readiness_and_healthz_always_answers() {
    use tower::ServiceExt;
    let m = Arc::new(Metrics::new(false));
    let get = |path: &'static str| {
        let app = router(m.clone());
        async move {
            let request = http::Request::get(path).body(axum::body::Body::empty()).unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    assert_eq!(get("/readyz").await.0, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get("/healthz").await.0, http::StatusCode::OK);
    m.set_readiness(Readiness::Standby);
    assert_eq!(get("/readyz").await, (http::StatusCode::OK, "standby\n".into()));
    m.set_readiness(Readiness::Syncing);
    assert_eq!(get("/readyz").await.0, http::StatusCode::SERVICE_UNAVAILABLE);
    m.set_readiness(Readiness::Leading);
    assert_eq!(get("/readyz").await.0, http::StatusCode::OK);
    let (status, body) = get("/metrics").await;
    assert_eq!(status, http::StatusCode::OK);
    assert!(body.contains("# TYPE suyun_leader gauge"), "{body}");
}

fn system(ns: &str, id: &str, wave: &str, cpu: &str) -> suyun_crds::v1alpha1::GovSystem {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "suyun.io/v1alpha1", "kind": "GovSystem",
        "metadata": {"name": id.to_lowercase(), "namespace": ns, "labels": {"suyun.io/wave": wave}},
        "spec": {"systemId": id, "displayName": id, "classification": "Internal", "securityLevel": 2,
                 "resources": {"cpu": cpu, "memory": "1Gi", "storage": "10Gi"}}
    }))
    .unwrap()
}

fn wave(name: &str, budget: u32) -> suyun_crds::v1alpha1::MigrationWave {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "suyun.io/v1alpha1", "kind": "MigrationWave", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"suyun.io/wave": name}}, "failureBudget": budget, "executor": "Simulated"}
    }))
    .unwrap()
}

fn tenant(name: &str, code: &str) -> suyun_crds::v1alpha1::Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "suyun.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {"displayName": name, "level": "City", "regionCode": code, "homeNode": "nanjing", "securityLevel": 2,
                 "quota": {"cpu": "100", "memory": "1Ti", "storage": "10Ti", "maxSystems": 10}}
    }))
    .unwrap()
}

/// Runs the loop's update over `systems` (with their statuses) and `waves`.
fn observe_loop(
    m: &Metrics,
    systems: &[(suyun_crds::v1alpha1::GovSystem, GovSystemStatus)],
    waves: &[suyun_crds::v1alpha1::MigrationWave],
    eta: Option<i64>,
) {
    observe_loop_with(m, systems, waves, eta, &[("nj-data", "320100")], |_| {}, &[]);
}

/// [`observe_loop`] with these Tenants (name, region code), the plan changed by `edit`, and
/// these run-out forecasts.
fn observe_loop_with(
    m: &Metrics,
    systems: &[(suyun_crds::v1alpha1::GovSystem, GovSystemStatus)],
    waves: &[suyun_crds::v1alpha1::MigrationWave],
    eta: Option<i64>,
    tenants: &[(&str, &str)],
    edit: impl FnOnce(&mut suyun_planner::Plan),
    run_out: &[suyun_planner::forecast::NodeRunOut],
) {
    let nodes = vec![Arc::new(cloud_node("nanjing", "City", "320100"))];
    let tenants: Vec<Arc<suyun_crds::v1alpha1::Tenant>> =
        tenants.iter().map(|(name, code)| Arc::new(tenant(name, code))).collect();
    let objects: Vec<Arc<suyun_crds::v1alpha1::GovSystem>> = systems.iter().map(|(s, _)| Arc::new(s.clone())).collect();
    let statuses: Vec<GovSystemStatus> = systems.iter().map(|(_, st)| st.clone()).collect();
    let waves: Vec<Arc<suyun_crds::v1alpha1::MigrationWave>> = waves.iter().cloned().map(Arc::new).collect();
    let wave_of: Vec<Option<String>> = objects
        .iter()
        .map(|s| crate::plan_input::wave_of(s, &waves).map(|w| w.metadata.name.clone().unwrap_or_default()))
        .collect();
    let members = crate::migration::waves::members(&wave_of, &statuses);
    let wave_states = crate::migration::waves::wave_states(&waves, &members, 2_000);
    let accounts = crate::accounts::compute(objects.iter().map(Arc::as_ref).zip(statuses.iter()), &tenants);
    let mut plan = suyun_planner::plan(&suyun_planner::model::PlanInput::default());
    plan.waves = waves
        .iter()
        .map(|w| suyun_planner::WaveSummary {
            name: w.metadata.name.clone().unwrap_or_default(),
            order: 1,
            not_before: None,
            systems: 0,
            placed: 0,
            start: None,
            end: eta,
        })
        .collect();
    edit(&mut plan);
    m.observe_loop(&state::LoopState {
        cloud_nodes: &nodes,
        tenants: &tenants,
        systems: &objects,
        statuses: &statuses,
        wave_of: &wave_of,
        waves: &wave_states,
        accounts: &accounts,
        plan: &plan,
        run_out,
    });
}

#[test]
fn a_nodes_forecast_run_out_is_a_timestamp_per_resource_and_absent_beyond_the_horizon() {
    let m = Metrics::new(false);
    let forecast = crate::readmodel::tests::nanjing_run_out();
    observe_loop_with(&m, &[], &[], None, &[("nj-data", "320100")], |_| {}, &forecast);
    let s = samples(&m.render());
    assert_eq!(
        s["suyun_node_run_out_timestamp_seconds{node=\"nanjing\",region_code=\"320100\",resource=\"cpu\"}"],
        1_830_000_000.0
    );
    assert!(
        !s.keys().any(|k| k.starts_with("suyun_node_run_out_timestamp_seconds") && k.contains("memory")),
        "no run-out within the horizon: no series"
    );
}

#[test]
fn the_loop_state_counts_systems_blocked_reasons_waves_and_tenants() {
    let m = Metrics::new(false);
    let at = |s: i64| Some(Time(Timestamp::from_second(s).unwrap()));
    let on = |phase: Phase, started: i64| GovSystemStatus {
        phase: Some(phase),
        node: Some("nanjing".into()),
        phase_started_at: at(started),
        ..Default::default()
    };
    let mut blocked = GovSystemStatus { phase: Some(Phase::Blocked), phase_started_at: at(1200), ..Default::default() };
    blocked.conditions = vec![Condition {
        type_: "Blocked".into(),
        status: "True".into(),
        reason: "InsufficientCapacity".into(),
        message: String::new(),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }];
    let systems = vec![
        (system("nj-data", "JS-320100-0001", "w1", "2"), on(Phase::Completed, 1500)),
        (system("nj-data", "JS-320100-0002", "w1", "3"), on(Phase::Replicating, 1000)),
        (system("nj-data", "JS-320100-0003", "w1", "64"), blocked),
        (system("nj-data", "JS-320100-0004", "w2", "1"), GovSystemStatus::default()),
    ];
    observe_loop(&m, &systems, &[wave("w1", 10), wave("w2", 5)], Some(1_800_000_000));
    let s = samples(&m.render());
    let systems_on = |node: &str, code: &str, phase: &str| {
        s[&format!("suyun_systems{{node=\"{node}\",phase=\"{phase}\",region_code=\"{code}\"}}")]
    };
    assert_eq!(systems_on("nanjing", "320100", "Completed"), 1.0);
    assert_eq!(systems_on("nanjing", "320100", "Replicating"), 1.0);
    assert_eq!(systems_on("nanjing", "320100", "Failed"), 0.0, "every phase is listed");
    assert_eq!(systems_on("", "", "Blocked"), 1.0);
    assert_eq!(systems_on("", "", "Pending"), 1.0);
    assert_eq!(s.iter().filter(|(k, _)| k.starts_with("suyun_systems{")).map(|(_, v)| v).sum::<f64>(), 4.0);
    assert_eq!(s["suyun_systems_blocked{reason=\"InsufficientCapacity\"}"], 1.0);
    assert_eq!(s["suyun_systems_blocked{reason=\"Other\"}"], 0.0);
    assert_eq!(s["suyun_wave_systems{phase=\"Blocked\",wave=\"w1\"}"], 1.0);
    assert_eq!(s["suyun_wave_progress_ratio{wave=\"w1\"}"], 1.0 / 3.0);
    assert_eq!(s["suyun_wave_failure_budget_ratio{wave=\"w2\"}"], 0.05);
    assert_eq!(s["suyun_wave_last_transition_timestamp_seconds{wave=\"w1\"}"], 1500.0);
    assert!(!s.contains_key("suyun_wave_last_transition_timestamp_seconds{wave=\"w2\"}"), "no transition yet");
    assert_eq!(s["suyun_wave_eta_timestamp_seconds{wave=\"w1\"}"], 1.8e9);
    assert_eq!(s["suyun_wave_active{wave=\"w1\"}"], 1.0);
    // Completed and Replicating hold capacity: 2 + 3 cores.
    let usage = "region_code=\"320100\",resource=\"cpu\",tenant=\"nj-data\",unit=\"core\"";
    assert_eq!(s[&format!("suyun_tenant_usage{{{usage}}}")], 5.0);
    assert_eq!(s[&format!("suyun_tenant_quota{{{usage}}}")], 100.0);
    assert_eq!(s["suyun_migrations_completed_total{wave=\"w2\"}"], 0.0, "counters exist for every wave");

    // w2 deleted, its system gone, the ETA unknown: their series leave.
    observe_loop(&m, &systems[..3], &[wave("w1", 10)], None);
    let text = m.render();
    assert!(!text.lines().any(|l| l.starts_with("suyun_wave_") && l.contains("wave=\"w2\"")), "{text}");
    assert!(!text.contains("suyun_wave_eta_timestamp_seconds{"), "{text}");
    let s = samples(&text);
    assert_eq!(s.iter().filter(|(k, _)| k.starts_with("suyun_systems{")).map(|(_, v)| v).sum::<f64>(), 3.0);
}

const GI: u64 = 1 << 30;

fn planned(cpu_millis: u64, memory: u64, storage: u64) -> suyun_planner::model::Resources {
    suyun_planner::model::Resources { cpu: cpu_millis, memory, storage, gpu: 0 }
}

fn tenant_account(
    name: &str,
    budget: Option<&str>,
    borrowed: suyun_planner::model::Resources,
    lent: suyun_planner::model::Resources,
) -> suyun_planner::TenantAccount {
    suyun_planner::TenantAccount {
        name: name.into(),
        display_name: name.into(),
        home_node: "suzhou".into(),
        quota: suyun_planner::model::Quota::default(),
        used: suyun_planner::TenantUsage::default(),
        budget: budget.map(Into::into),
        borrowed,
        lent,
    }
}

/// Suzhou's budget: 40 cores, 200 GiB, 2 TiB of its own node, 30 cores and 100 GiB used; 10
/// cores of the provincial node, 12 used (the budget was lowered under running systems), no
/// memory there, and 1 GiB of storage used of none. sz-data borrows 2.5 cores and 1 GiB from
/// sz-health; 8 cores, 16 GiB and 100 GiB could be lent.
fn with_suzhou_budget(plan: &mut suyun_planner::Plan) {
    let zero = suyun_planner::model::Resources::default();
    let share = |node: &str, budget, used| suyun_planner::ShareAccount {
        node: node.into(),
        budget,
        used,
        utilization: suyun_planner::Utilization::default(),
    };
    plan.cities = vec![suyun_planner::CityAccount {
        name: "suzhou".into(),
        region_code: "320500".into(),
        display_name: "苏州市".into(),
        tenants: vec!["sz-data".into(), "sz-health".into()],
        nodes: vec![
            share("jiangsu", planned(10_000, 0, 0), planned(12_000, 0, GI)),
            share("suzhou", planned(40_000, 200 * GI, 2048 * GI), planned(30_000, 100 * GI, 0)),
        ],
        borrowed: planned(2_500, GI, 0),
        lendable: planned(8_000, 16 * GI, 100 * GI),
    }];
    plan.tenants = vec![
        tenant_account("nj-data", None, zero, zero),
        tenant_account("sz-data", Some("suzhou"), planned(2_500, GI, 0), zero),
        tenant_account("sz-health", Some("suzhou"), zero, planned(2_500, GI, 0)),
    ];
}

#[test]
fn a_city_budget_gives_its_node_shares_and_lending_and_leaves_with_it() {
    let m = Metrics::new(false);
    // sz-data is a Tenant of a district (320505); sz-health has no Tenant object in the loop
    // and gets its city's code.
    let tenants = [("nj-data", "320100"), ("sz-data", "320505")];
    observe_loop_with(&m, &[], &[], None, &tenants, with_suzhou_budget, &[]);
    let s = samples(&m.render());
    let city = |family: &str, node: &str, resource: &str| {
        let unit = if resource == "cpu" { "core" } else { "byte" };
        let key = format!(
            "{family}{{city=\"suzhou\",node=\"{node}\",region_code=\"320500\",resource=\"{resource}\",unit=\"{unit}\"}}"
        );
        *s.get(&key).unwrap_or_else(|| panic!("{key} missing"))
    };
    assert_eq!(city("suyun_city_budget", "suzhou", "cpu"), 40.0);
    assert_eq!(city("suyun_city_budget", "suzhou", "memory"), 214_748_364_800.0);
    assert_eq!(city("suyun_city_budget", "suzhou", "storage"), 2_199_023_255_552.0);
    assert_eq!(city("suyun_city_budget_used", "suzhou", "cpu"), 30.0);
    assert_eq!(city("suyun_city_budget_used", "suzhou", "memory"), 107_374_182_400.0);
    assert_eq!(city("suyun_city_budget", "jiangsu", "cpu"), 10.0);
    assert_eq!(city("suyun_city_budget_used", "jiangsu", "cpu"), 12.0);
    assert_eq!(city("suyun_city_budget_used", "jiangsu", "storage"), 1_073_741_824.0);
    let ratio = |node: &str, resource: &str| {
        s[&format!(
            "suyun_city_budget_utilization_ratio{{city=\"suzhou\",node=\"{node}\",region_code=\"320500\",resource=\"{resource}\"}}"
        )]
    };
    assert_eq!(ratio("suzhou", "cpu"), 0.75);
    assert_eq!(ratio("suzhou", "memory"), 0.5);
    assert_eq!(ratio("suzhou", "storage"), 0.0);
    assert_eq!(ratio("jiangsu", "cpu"), 1.2, "above 1 under a lowered budget");
    assert_eq!(ratio("jiangsu", "memory"), 0.0, "a zero budget nothing uses");
    assert_eq!(ratio("jiangsu", "storage"), 1.0, "a zero budget something uses");
    let lending = |resource: &str, unit: &str, kind: &str| {
        s[&format!(
            "suyun_city_lending{{city=\"suzhou\",kind=\"{kind}\",region_code=\"320500\",resource=\"{resource}\",unit=\"{unit}\"}}"
        )]
    };
    assert_eq!(lending("cpu", "core", "borrowed"), 2.5);
    assert_eq!(lending("memory", "byte", "borrowed"), 1_073_741_824.0);
    assert_eq!(lending("storage", "byte", "borrowed"), 0.0);
    // Still offered: what could be lent less what is borrowed.
    assert_eq!(lending("cpu", "core", "lendable"), 5.5);
    assert_eq!(lending("memory", "byte", "lendable"), 16_106_127_360.0);
    assert_eq!(lending("storage", "byte", "lendable"), 107_374_182_400.0);
    let count = |prefix: &str| s.keys().filter(|k| k.starts_with(prefix)).count();
    assert_eq!(count("suyun_city_budget{"), 6, "2 nodes x 3 resources, no gpu");
    assert_eq!(count("suyun_city_budget_utilization_ratio{"), 6);
    assert_eq!(count("suyun_city_lending{"), 6);

    let tenant = |family: &str, name: &str, code: &str, resource: &str, unit: &str| {
        let key =
            format!("{family}{{region_code=\"{code}\",resource=\"{resource}\",tenant=\"{name}\",unit=\"{unit}\"}}");
        *s.get(&key).unwrap_or_else(|| panic!("{key} missing"))
    };
    assert_eq!(tenant("suyun_tenant_borrowed", "sz-data", "320505", "cpu", "core"), 2.5);
    assert_eq!(tenant("suyun_tenant_borrowed", "sz-data", "320505", "memory", "byte"), 1_073_741_824.0);
    assert_eq!(tenant("suyun_tenant_lent", "sz-data", "320505", "cpu", "core"), 0.0);
    assert_eq!(tenant("suyun_tenant_lent", "sz-health", "320500", "cpu", "core"), 2.5);
    assert_eq!(tenant("suyun_tenant_borrowed", "sz-health", "320500", "cpu", "core"), 0.0);
    assert_eq!(count("suyun_tenant_borrowed{"), 6, "only the tenants in a budget: {s:?}");
    assert_eq!(count("suyun_tenant_lent{"), 6);
    assert!(!s.keys().any(|k| k.starts_with("suyun_tenant_lent{") && k.contains("nj-data")), "{s:?}");

    // The budget deleted: its series leave.
    observe_loop_with(&m, &[], &[], None, &tenants, |_| {}, &[]);
    let text = m.render();
    for family in ["suyun_city_", "suyun_tenant_borrowed{", "suyun_tenant_lent{"] {
        assert!(!text.lines().any(|l| l.starts_with(family)), "{family} left over:\n{text}");
    }
}

fn finding(id: &str, rule: &str, granted_by: Option<&str>) -> suyun_planner::ResidencyFinding {
    suyun_planner::ResidencyFinding {
        system_id: id.into(),
        tenant: "sz-health".into(),
        node: "jiangsu".into(),
        phase: suyun_planner::model::Phase::Completed,
        rule: rule.into(),
        granted_by: granted_by.map(Into::into),
    }
}

#[test]
fn stranded_and_waived_systems_are_counted_by_rule_with_the_builtin_rule_always_listed() {
    const BUILTIN: &str = "builtin/sensitive-stays-in-own-city";
    let medical = "province-residency/medical-in-city";
    let m = Metrics::new(false);
    observe_loop_with(
        &m,
        &[],
        &[],
        None,
        &[],
        |plan| {
            plan.residency.stranded = vec![
                finding("JS-320500-0007", BUILTIN, None),
                finding("JS-320500-0011", medical, None),
                finding("JS-320500-0012", medical, None),
            ];
            plan.residency.waived = vec![finding("JS-320500-0020", medical, Some("李明 (苏州市大数据局)"))];
        },
        &[],
    );
    let s = samples(&m.render());
    let stranded = |rule: &str| s.get(&format!("suyun_residency_stranded_systems{{rule=\"{rule}\"}}")).copied();
    let waived = |rule: &str| s.get(&format!("suyun_residency_waived_systems{{rule=\"{rule}\"}}")).copied();
    assert_eq!(stranded(BUILTIN), Some(1.0));
    assert_eq!(stranded(medical), Some(2.0));
    assert_eq!(waived(medical), Some(1.0));
    assert_eq!(waived(BUILTIN), Some(0.0));

    // Migrated or waived since: the built-in rule stays at 0, the other leaves.
    observe_loop_with(&m, &[], &[], None, &[], |_| {}, &[]);
    let s = samples(&m.render());
    let stranded = |rule: &str| s.get(&format!("suyun_residency_stranded_systems{{rule=\"{rule}\"}}")).copied();
    assert_eq!(stranded(BUILTIN), Some(0.0), "an alert on > 0 sees 0, not nothing");
    assert_eq!(stranded(medical), None);
    assert!(!s.keys().any(|k| k.contains(medical)), "{s:?}");
}
