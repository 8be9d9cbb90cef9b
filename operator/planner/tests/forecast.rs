//! Forecasts: run-out dates against a hand computation, the least extra capacity against
//! `plan` itself (enough, and coordinate-wise minimal: checked here by planning directly, not
//! with the search's code), what-if changes on the Jiangsu set, and deadlines capacity cannot
//! meet.
//!
//! Nodes and tenants are built from JSON so that fields added to the model later (with serde
//! defaults) do not break these tests.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Gen;
use proptest::prelude::*;
use serde_json::json;
use suyun_planner::forecast::{
    CapacityForecast, CapacityOutcome, ForecastRequest, ResourceName, WhatIf, YEAR_SECONDS, forecast,
};
use suyun_planner::model::{
    ArchitectureRequirement, Node, Phase, PlanInput, Resources, Settings, Strategy, System, Tenant, Wave,
};
use suyun_planner::{Plan, plan};

/// 2025-03-03 00:00 +08:00, a Monday.
const MONDAY: i64 = 1_740_931_200;
const GI: u64 = 1 << 30;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

fn node(name: &str, tier: &str, region: &str, display: &str, cores: u64) -> Node {
    node_json(json!({
        "name": name, "tier": tier, "regionCode": region, "displayName": display,
        "allocatable": {"cpu": cores * 1000, "memory": cores * 4 * GI, "storage": 1000 * GI, "gpu": 0},
        "architectures": ["x86_64", "aarch64"],
        "maxConcurrentMigrations": 4, "migrationBandwidthMbps": 4000,
    }))
}

fn node_json(v: serde_json::Value) -> Node {
    serde_json::from_value(v).expect("a node")
}

fn tenant(name: &str, level: &str, home: &str) -> Tenant {
    serde_json::from_value(json!({
        "name": name, "displayName": format!("{name} 厅局"), "level": level, "homeNode": home,
        "quota": {"cpu": 1_000_000_000u64, "memory": 1u64 << 60, "storage": 1u64 << 60, "maxSystems": 1_000_000},
    }))
    .expect("a tenant")
}

fn system(id: &str, tenant: &str, cores: u64) -> System {
    System {
        system_id: id.into(),
        name: id.to_lowercase(),
        tenant: tenant.into(),
        security_level: 2,
        resources: Resources { cpu: cores * 1000, memory: cores * 2 * GI, storage: 10 * GI, gpu: 0 },
        priority: 500,
        ..System::default()
    }
}

fn input(nodes: Vec<Node>, tenants: Vec<Tenant>, systems: Vec<System>) -> PlanInput {
    PlanInput {
        settings: Settings { now: MONDAY, ..Settings::default() },
        nodes,
        tenants,
        systems,
        ..PlanInput::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Independent feasibility oracle: plan with the extra applied the documented way.

/// `input` with `extra` (by node name) added to allocatable; on a node with known machines, as
/// one more machine of that size.
fn with_extra(input: &PlanInput, extra: &BTreeMap<String, Resources>) -> PlanInput {
    let mut out = input.clone();
    for n in &mut out.nodes {
        if let Some(e) = extra.get(&n.name) {
            n.allocatable = n.allocatable.plus(*e);
            if !n.machines.is_empty() && *e != Resources::default() {
                n.machines.push(*e);
            }
        }
    }
    out
}

/// The systems placed when capacity is unlimited.
fn placeable(input: &PlanInput) -> BTreeSet<String> {
    let mut unlimited = input.clone();
    for n in &mut unlimited.nodes {
        n.allocatable = Resources { cpu: 1 << 60, memory: 1 << 60, storage: 1 << 60, gpu: 1 << 60 };
        n.machines.clear();
    }
    plan(&unlimited).assignments.into_iter().map(|a| a.system_id).collect()
}

/// Whether `p` places every placeable system and completes everything by `deadline`.
fn meets(p: &Plan, placeable: &BTreeSet<String>, deadline: i64) -> bool {
    let placed: BTreeSet<&str> = p.assignments.iter().map(|a| a.system_id.as_str()).collect();
    placeable.iter().all(|id| placed.contains(id.as_str()))
        && p.assignments.iter().all(|a| a.planned_completion.is_none_or(|c| c <= deadline))
}

fn extras(cap: &CapacityForecast) -> BTreeMap<String, Resources> {
    cap.nodes.iter().map(|n| (n.node.clone(), n.extra)).collect()
}

/// Checks that the forecast's extra is enough and coordinate-wise minimal, by planning.
fn check_least_extra(input: &PlanInput, cap: &CapacityForecast) -> Result<(), TestCaseError> {
    let placeable = placeable(input);
    prop_assert_eq!(cap.placeable, placeable.len());
    let extra = extras(cap);
    let enough = plan(&with_extra(input, &extra));
    prop_assert!(meets(&enough, &placeable, cap.deadline), "the extra {:?} is not enough", extra);
    for (name, e) in &extra {
        prop_assert!(*e != Resources::default(), "node {} listed with no extra", name);
        for r in ResourceName::ALL {
            if r.of(e) == 0 {
                continue;
            }
            prop_assert!(r.of(e) % r.granule() == 0, "{} {} not whole granules", name, r.as_str());
            let mut less = extra.clone();
            let mut v = *e;
            r.set(&mut v, r.of(e) - r.granule());
            less.insert(name.clone(), v);
            let p = plan(&with_extra(input, &less));
            prop_assert!(
                !meets(&p, &placeable, cap.deadline),
                "one granule less {} on {} is still enough: {:?}",
                r.as_str(),
                name,
                extra
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Random small inputs.

/// A provincial node and 1–3 cities, tight capacity, a few systems (some pinned, some with
/// dependencies, spillover, architectures, GPUs, sameNodeAs), sometimes known machines.
fn random_input(seed: u64, systems: usize) -> PlanInput {
    let mut g = Gen(seed);
    let cities = 1 + g.below(3) as usize;
    // Half of the inputs have a slow province (one slot, little bandwidth) that city systems
    // spill over to: there, where capacity is bought decides when the migration ends.
    let slow_province = g.chance(50);
    let mut nodes = Vec::new();
    for k in 0..=cities {
        let (slots, bandwidth) = match (k, slow_province) {
            (0, true) => (1, 100 + g.below(300)),
            (_, true) => (2 + g.below(2), 2000 + g.below(4000)),
            _ => (1 + g.below(2), 500 + g.below(4000)),
        };
        let cores = 4 + g.below(40);
        let mut archs = vec!["x86_64"];
        if g.chance(50) {
            archs.push("aarch64");
        }
        let machines: Vec<serde_json::Value> = if g.chance(25) {
            (0..1 + g.below(3))
                .map(|_| {
                    let c = 2 + g.below(8);
                    json!({"cpu": c * 1000, "memory": c * 4 * GI, "gpu": g.below(2)})
                })
                .collect()
        } else {
            vec![]
        };
        nodes.push(node_json(json!({
            "name": if k == 0 { "p".to_owned() } else { format!("c{k}") },
            "tier": if k == 0 { "Provincial" } else { "City" },
            "regionCode": if k == 0 { "320000".to_owned() } else { format!("320{k}00") },
            "displayName": format!("节点{k}"),
            "allocatable": {
                "cpu": cores * 1000, "memory": cores * 3 * GI, "storage": (20 + g.below(200)) * GI, "gpu": g.below(2),
            },
            "securityLevel": 3,
            "architectures": archs,
            "maxConcurrentMigrations": slots,
            "migrationBandwidthMbps": bandwidth,
            "cordoned": g.chance(5),
            "machines": machines,
        })));
    }
    let mut tenants = vec![tenant("prov", "Provincial", "p")];
    for k in 1..=cities {
        tenants.push(tenant(&format!("t{k}"), "City", &format!("c{k}")));
    }
    let waves = if g.chance(30) {
        vec![Wave { name: "w".into(), order: 1, not_before: None, windows: vec![], max_concurrent: Some(2) }]
    } else {
        vec![]
    };
    let id = |i: usize| format!("S{i:02}");
    let systems = (0..systems)
        .map(|i| {
            let t = if slow_province && g.chance(80) {
                1 + g.below(cities as u64) as usize
            } else {
                g.below(tenants.len() as u64) as usize
            };
            let cores = 1 + g.below(6);
            let mut s = system(&id(i), &tenants[t].name, cores);
            s.resources.memory = (1 + g.below(4 * cores)) * GI;
            s.resources.storage = (1 + g.below(60)) * GI;
            s.resources.gpu = u64::from(g.chance(8));
            s.data_volume = g.below(2000) * 1_000_000_000;
            s.priority = 100 * g.below(10) as u32;
            s.architecture = [
                ArchitectureRequirement::Any,
                ArchitectureRequirement::Any,
                ArchitectureRequirement::X86_64,
                ArchitectureRequirement::Aarch64,
            ][g.below(4) as usize];
            s.placement.allow_spillover = g.chance(if slow_province { 85 } else { 60 });
            if i > 0 && g.chance(20) {
                s.depends_on.push(id(g.below(i as u64) as usize));
            }
            if i > 0 && g.chance(8) {
                s.same_node_as.push(id(i - 1));
            }
            if g.chance(5) {
                s.strategy = Strategy::Retire;
            }
            if !waves.is_empty() && g.chance(50) {
                s.wave = Some("w".into());
            }
            if g.chance(10) {
                s.phase = [Phase::Replicating, Phase::Completed, Phase::Verifying][g.below(3) as usize];
                s.node = Some(tenants[t].home_node.clone());
            }
            s
        })
        .collect();
    PlanInput { waves, ..input(nodes, tenants, systems) }
}

/// A deadline the unlimited plan meets (so capacity can). When there is
/// one (70 %), a deadline that binds: before the last completion of the least extra capacity found
/// for no deadline at all (so placing every system is not enough, it must also be on time).
fn reachable_deadline(input: &PlanInput, g: &mut Gen) -> i64 {
    let mut unlimited = input.clone();
    for n in &mut unlimited.nodes {
        n.allocatable = Resources { cpu: 1 << 60, memory: 1 << 60, storage: 1 << 60, gpu: 1 << 60 };
        n.machines.clear();
    }
    let fastest = plan(&unlimited).assignments.iter().filter_map(|a| a.planned_completion).max();
    let fastest = fastest.unwrap_or(input.settings.now);
    if g.chance(70) {
        let far = ForecastRequest { deadline: Some(fastest + 3650 * DAY), ..ForecastRequest::default() };
        let placed_only = forecast(input, &far).capacity.and_then(|c| c.last_completion).unwrap_or(fastest);
        if placed_only > fastest {
            return fastest + g.below((placed_only - fastest) as u64) as i64;
        }
    }
    fastest + if g.chance(40) { 0 } else { HOUR * g.below(72) as i64 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// (a) The extra capacity is enough and one granule less of any coordinate is not.
    #[test]
    fn least_extra_is_enough_and_coordinate_wise_minimal(seed in any::<u64>(), n in 4usize..16) {
        let input = random_input(seed, n);
        let deadline = reachable_deadline(&input, &mut Gen(seed ^ 0x5EED));
        let request = ForecastRequest { deadline: Some(deadline), ..ForecastRequest::default() };
        let f = forecast(&input, &request);
        let cap = f.capacity.as_ref().expect("a capacity answer");
        prop_assert!(cap.coordinate_wise_minimum);
        match cap.outcome {
            CapacityOutcome::AlreadyMet => {
                prop_assert!(cap.nodes.is_empty());
                prop_assert!(meets(&plan(&input), &placeable(&input), deadline));
            }
            CapacityOutcome::ExtraCapacity => prop_assert!(!cap.nodes.is_empty()),
            other => return Err(TestCaseError::fail(format!("{other:?}: {}", cap.message))),
        }
        check_least_extra(&input, cap)?;
    }
}

/// The random inputs need extra capacity often enough, on several coordinates, for the
/// property above to say something.
#[test]
fn random_inputs_need_extra_capacity() {
    let (mut needing, mut coordinates, mut machines, mut binding) = (0, 0, 0, 0);
    for seed in 0..60u64 {
        let input = random_input(seed, 12);
        let deadline = reachable_deadline(&input, &mut Gen(seed ^ 0x5EED));
        let f = forecast(&input, &ForecastRequest { deadline: Some(deadline), ..ForecastRequest::default() });
        let Some(cap) = f.capacity else { continue };
        // Binding: placing every system with the least capacity is not enough by this deadline.
        let far = ForecastRequest { deadline: Some(deadline + 3650 * DAY), ..ForecastRequest::default() };
        if forecast(&input, &far).capacity.is_some_and(|c| extras(&c) != extras(&cap)) {
            binding += 1;
        }
        if cap.outcome == CapacityOutcome::ExtraCapacity {
            needing += 1;
            coordinates += cap
                .nodes
                .iter()
                .map(|n| ResourceName::ALL.iter().filter(|r| r.of(&n.extra) > 0).count())
                .sum::<usize>();
            machines += cap.nodes.iter().filter(|n| n.as_machine).count();
        }
    }
    eprintln!(
        "{needing} of 60 need extra capacity, on {coordinates} coordinates, {machines} as a machine; \
         the deadline binds in {binding}"
    );
    assert!(
        needing >= 20 && coordinates >= 50 && machines >= 5 && binding >= 3,
        "{needing} {coordinates} {machines} {binding}"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) Run-out dates against a hand computation.

/// One node of 10 cores: a Completed system of 4 cores on it, a new one of 4 cores held until
/// now + 10 days by its wave. Growth 20 %/year, continuous.
fn one_node(allocatable_cores: u64) -> PlanInput {
    let mut done = system("A-DONE", "t", 4);
    done.phase = Phase::Completed;
    done.node = Some("n".into());
    let mut new = system("B-NEW", "t", 4);
    new.wave = Some("later".into());
    let mut i = input(
        vec![node("n", "Provincial", "320000", "江苏省", allocatable_cores)],
        vec![tenant("t", "Provincial", "n")],
        vec![done, new],
    );
    i.waves = vec![Wave {
        name: "later".into(),
        order: 1,
        not_before: Some(MONDAY + 10 * DAY),
        windows: vec![],
        max_concurrent: None,
    }];
    i
}

#[test]
fn run_out_by_growth_matches_a_hand_computation() {
    let input = one_node(10);
    let request = ForecastRequest { growth_percent_per_year: 20.0, ..ForecastRequest::default() };
    let f = forecast(&input, &request);
    let n = &f.run_out[0];
    let cpu = n.resources.iter().find(|r| r.resource == ResourceName::Cpu).expect("cpu");
    // 8 cores from now + 10 days (4 before): 8 · 1.2^τ = 10 at τ = ln(10/8) / ln 1.2 years.
    let tau = (10.0f64 / 8.0).ln() / 1.2f64.ln();
    let expected = MONDAY as f64 + tau * 365.0 * 86_400.0;
    let got = cpu.run_out.expect("runs out within five years");
    assert!((got as f64 - expected).abs() <= 1.0, "{got} vs {expected}");
    assert!(got > MONDAY + 10 * DAY);
    assert_eq!(cpu.caused_by, None);
    assert_eq!(cpu.usage_now, 4000);
    assert_eq!(cpu.allocatable, 10_000);
    // At the node's last completion, 8 cores grown for that long.
    let start = plan(&input).assignments.iter().find(|a| a.system_id == "B-NEW").and_then(|a| a.planned_start);
    assert_eq!(start, Some(MONDAY + 10 * DAY));
    let grown = 8000.0 * 1.2f64.powf((n.migration_completes - MONDAY) as f64 / YEAR_SECONDS);
    assert_eq!(cpu.usage_at_completion, grown.round() as u64);
    // Memory: 16 Gi used of 40 Gi reaches it after ln(2.5) / ln(1.2) = 5.03 years, just past
    // the default horizon of 5 × 365 days; a longer horizon sees it.
    let memory = |f: &suyun_planner::forecast::Forecast| {
        f.run_out[0].resources.iter().find(|r| r.resource == ResourceName::Memory).and_then(|r| r.run_out)
    };
    assert_eq!(memory(&f), None);
    let longer = forecast(&input, &ForecastRequest { horizon_days: 1900, ..request.clone() });
    let tau = (40.0f64 / 16.0).ln() / 1.2f64.ln();
    let got = memory(&longer).expect("within 1900 days");
    assert!((got as f64 - (MONDAY as f64 + tau * YEAR_SECONDS)).abs() <= 1.0, "{got}");
    let storage = n.resources.iter().find(|r| r.resource == ResourceName::Storage).expect("storage");
    assert_eq!(storage.run_out, None, "20 Gi of 1000 Gi");
    assert!(n.resources.iter().all(|r| r.resource != ResourceName::Gpu));

    // Without growth nothing runs out.
    let flat = forecast(&input, &ForecastRequest::default());
    assert!(flat.run_out[0].resources.iter().all(|r| r.run_out.is_none()));
}

#[test]
fn run_out_by_a_start_names_the_system() {
    // 8 cores: the planner places both (4 + 4), but by B-NEW's start ten days out the 4 cores
    // already there have grown: 8 · 1.2^(10/365) > 8 from the start on.
    let input = one_node(8);
    let f = forecast(&input, &ForecastRequest { growth_percent_per_year: 20.0, ..ForecastRequest::default() });
    let cpu = &f.run_out[0].resources[0];
    assert_eq!(cpu.resource, ResourceName::Cpu);
    assert_eq!(cpu.run_out, Some(MONDAY + 10 * DAY));
    assert_eq!(cpu.caused_by.as_deref(), Some("B-NEW"));
    // A horizon shorter than ten days sees nothing.
    let short = forecast(
        &input,
        &ForecastRequest { growth_percent_per_year: 20.0, horizon_days: 9, ..ForecastRequest::default() },
    );
    assert_eq!(short.run_out[0].resources[0].run_out, None);
    // Growth that cannot be (−100 % or less) is read as 0, with a warning.
    let bad = forecast(&input, &ForecastRequest { growth_percent_per_year: -150.0, ..ForecastRequest::default() });
    assert_eq!(bad.growth_percent_per_year, 0.0);
    assert_eq!(bad.warnings.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// (c) What-if on the Jiangsu set.

#[test]
fn cordoning_a_jiangsu_city_moves_what_has_not_started_and_keeps_what_has() {
    let mut input = suyun_planner::synthetic::jiangsu(1);
    let city = "cn-320500";
    // Put a few of 苏州's systems in flight or Completed there.
    let before = plan(&input);
    let on_city: Vec<String> =
        before.assignments.iter().filter(|a| a.node == city).map(|a| a.system_id.clone()).collect();
    let started: BTreeSet<&str> = on_city.iter().take(12).map(String::as_str).collect();
    for (k, s) in input.systems.iter_mut().filter(|s| started.contains(s.system_id.as_str())).enumerate() {
        s.phase = if k % 3 == 0 { Phase::Completed } else { Phase::Replicating };
        s.node = Some(city.into());
    }
    let request = ForecastRequest { what_if: vec![WhatIf::Cordon(city.into())], ..ForecastRequest::default() };
    let f = forecast(&input, &request);
    let w = &f.what_if[0];
    assert!(w.warnings.is_empty());
    let current = plan(&input);
    let mut cordoned = input.clone();
    for n in &mut cordoned.nodes {
        if n.name == city {
            n.cordoned = true;
        }
    }
    let after = plan(&cordoned);
    let moved: BTreeMap<&str, &str> = w.moved.iter().map(|m| (m.system_id.as_str(), m.to.as_str())).collect();
    let refused: BTreeSet<&str> = w.unplaceable.iter().map(|u| u.system_id.as_str()).collect();
    let pinned = |id: &str| input.systems.iter().any(|s| s.system_id == id && s.phase.is_pinned());
    let mut not_started = 0;
    for a in current.assignments.iter().filter(|a| a.node == city) {
        let id = a.system_id.as_str();
        if pinned(id) {
            assert!(!moved.contains_key(id) && !refused.contains(id), "{id} is in flight or done and must stay");
            assert_eq!(after.assignments.iter().find(|b| b.system_id == id).map(|b| b.node.as_str()), Some(city));
        } else {
            not_started += 1;
            match moved.get(id) {
                Some(to) => {
                    assert_ne!(*to, city);
                    let really = after.assignments.iter().find(|b| b.system_id == id).map(|b| b.node.as_str());
                    assert_eq!(really, Some(*to), "{id}");
                }
                None => assert!(refused.contains(id), "{id} was on {city}, not started, and neither moved nor refused"),
            }
        }
    }
    assert!(not_started > 500 && !w.moved.is_empty() && !w.unplaceable.is_empty(), "{not_started}");
    // Nothing new goes to the cordoned city, and every refusal carries the new plan's reason.
    assert!(w.moved.iter().all(|m| m.to != city));
    for u in &w.unplaceable {
        let r = after.unplaceable.iter().find(|x| x.system_id == u.system_id).expect("refused after");
        assert_eq!((r.reason, &r.message), (u.reason, &u.message));
    }
    assert_eq!(w.placed_after, after.placed);
    assert_eq!(w.makespan_hours_after, after.makespan_hours);
    let table = f.render_table();
    assert!(table.contains("What if: cordon 320500 苏州市 (cn-320500)"), "{table}");
}

#[test]
fn removing_a_node_replans_what_was_on_it_and_adding_one_replaces_it() {
    let nodes = vec![node("p", "Provincial", "320000", "江苏省", 64), node("c1", "City", "320100", "南京市", 16)];
    // Spilled over to the province earlier, and Completed there.
    let mut spilled = system("S-SPILLED", "city", 4);
    spilled.phase = Phase::Completed;
    spilled.node = Some("p".into());
    spilled.placement.allow_spillover = true;
    let fresh = system("S-NEW", "city", 4);
    let input = input(nodes, vec![tenant("city", "City", "c1")], vec![spilled, fresh]);
    let bigger = node("c1", "City", "320100", "南京市", 128);
    let request = ForecastRequest {
        what_if: vec![
            WhatIf::Remove("p".into()),
            WhatIf::Remove("c1".into()),
            WhatIf::Add(bigger),
            WhatIf::Cordon("nowhere".into()),
        ],
        ..ForecastRequest::default()
    };
    let f = forecast(&input, &request);
    // The province removed: the Completed system is planned again as if not started, at home.
    let removed = &f.what_if[0];
    let moved: BTreeMap<&str, (&str, &str)> =
        removed.moved.iter().map(|m| (m.system_id.as_str(), (m.from.as_str(), m.to.as_str()))).collect();
    assert_eq!(moved.get("S-SPILLED"), Some(&("p", "c1")));
    assert!(!moved.contains_key("S-NEW"));
    // The city removed: its tenant's home is gone; the planner says so.
    let removed = &f.what_if[1];
    let refused = removed.unplaceable.iter().find(|u| u.system_id == "S-NEW").expect("S-NEW refused");
    assert_eq!(refused.reason, suyun_planner::Reason::UnknownNode);
    assert_eq!(refused.was_on, "c1");
    // Added with the same name: replaces the node, with a warning; nothing moves.
    let added = &f.what_if[2];
    assert!(added.moved.is_empty() && added.unplaceable.is_empty());
    assert_eq!(added.warnings.len(), 1);
    // A change naming no node warns and changes nothing.
    let none = &f.what_if[3];
    assert_eq!(none.warnings.len(), 1);
    assert!(none.moved.is_empty() && none.later.is_empty() && none.earlier.is_empty());
    assert_eq!(f.plans_run, 5);
}

// ---------------------------------------------------------------------------------------------
// (d) Deadlines capacity cannot meet.

#[test]
fn a_deadline_slots_cannot_meet_is_reported_as_such() {
    // One slot, two systems of 2h00m each at least (fixed phases): 4 hours, whatever the capacity.
    let mut n = node("p", "Provincial", "320000", "江苏省", 4);
    n.max_concurrent_migrations = 1;
    let input = input(vec![n], vec![tenant("t", "Provincial", "p")], vec![system("A", "t", 2), system("B", "t", 8)]);
    let deadline = MONDAY + 3 * HOUR;
    let f = forecast(&input, &ForecastRequest { deadline: Some(deadline), ..ForecastRequest::default() });
    let cap = f.capacity.expect("a capacity answer");
    assert_eq!(cap.outcome, CapacityOutcome::CapacityCannotMeetDeadline);
    assert!(cap.message.starts_with("capacity alone cannot meet the deadline"), "{}", cap.message);
    assert!(cap.message.contains("migration slots, bandwidth or windows limit it"));
    assert_eq!(cap.unlimited_last_completion, Some(MONDAY + 4 * HOUR));
    assert_eq!(cap.lower_bound_hours, 4.0);
    assert!(cap.nodes.is_empty());
    assert_eq!(cap.plans_run, 1, "no search");
    // With a deadline it can meet, A and B (2 + 8 cores on a 4-core node) need 6 more cores.
    let f = forecast(&input, &ForecastRequest { deadline: Some(MONDAY + 4 * HOUR), ..ForecastRequest::default() });
    let cap = f.capacity.expect("a capacity answer");
    assert_eq!(cap.outcome, CapacityOutcome::ExtraCapacity);
    assert_eq!(cap.nodes.len(), 1);
    assert_eq!(cap.nodes[0].extra.cpu, 6000, "2 + 8 cores on 4");
    assert_eq!(cap.nodes[0].admitted, vec!["B".to_owned()]);
    assert_eq!(cap.nodes[0].by_architecture.either, cap.nodes[0].extra);
}

#[test]
fn a_jiangsu_deadline_one_day_out_cannot_be_met_by_capacity() {
    let input = suyun_planner::synthetic::jiangsu(1);
    let deadline = input.settings.now + 24 * HOUR;
    let f = forecast(&input, &ForecastRequest { deadline: Some(deadline), ..ForecastRequest::default() });
    let cap = f.capacity.as_ref().expect("a capacity answer");
    assert_eq!(cap.outcome, CapacityOutcome::CapacityCannotMeetDeadline);
    assert!(cap.unlimited_last_completion.is_some_and(|t| t > deadline));
    assert!(cap.lower_bound_hours > 24.0, "{}", cap.lower_bound_hours);
    assert!(f.render_table().contains("capacity alone cannot meet the deadline"));
}

#[test]
fn a_deadline_can_need_capacity_where_spillover_is_slow() {
    // A fast city of 4 cores and a slow province (one slot, 100 Mbps). Three city systems of
    // 4 cores and 100 GB each: one fits at home, two spill over and queue on the province.
    let mut city = node("c1", "City", "320100", "南京市", 4);
    city.max_concurrent_migrations = 4;
    let mut province = node("p", "Provincial", "320000", "江苏省", 64);
    province.max_concurrent_migrations = 1;
    province.migration_bandwidth_mbps = 100;
    let systems: Vec<System> = (1..=3)
        .map(|k| {
            let mut s = system(&format!("S{k}"), "city", 4);
            s.data_volume = 100_000_000_000;
            s.placement.allow_spillover = true;
            s
        })
        .collect();
    let input = input(vec![city, province], vec![tenant("city", "City", "c1")], systems);
    let current = plan(&input);
    assert_eq!(current.unplaceable.len(), 0);
    assert!(current.makespan_hours > 8.0, "{}", current.makespan_hours);
    // Everything is placed: a late deadline needs nothing.
    let late = forecast(&input, &ForecastRequest { deadline: Some(MONDAY + 24 * HOUR), ..ForecastRequest::default() });
    assert_eq!(late.capacity.as_ref().map(|c| c.outcome), Some(CapacityOutcome::AlreadyMet));
    // In three hours only if all three move at home: 8 more cores and 8 Gi more memory there.
    let deadline = MONDAY + 3 * HOUR;
    let f = forecast(&input, &ForecastRequest { deadline: Some(deadline), ..ForecastRequest::default() });
    let cap = f.capacity.as_ref().expect("a capacity answer");
    assert_eq!(cap.outcome, CapacityOutcome::ExtraCapacity, "{}", cap.message);
    assert_eq!(cap.nodes.len(), 1);
    assert_eq!(cap.nodes[0].node, "c1");
    assert_eq!(cap.nodes[0].extra, Resources { cpu: 8000, memory: 8 * GI, storage: 0, gpu: 0 });
    assert!(cap.nodes[0].admitted.is_empty(), "nothing was unplaced");
    assert!(cap.last_completion.is_some_and(|t| t <= deadline));
    check_least_extra(&input, cap).map_err(|e| e.to_string()).expect("least extra");
}

// ---------------------------------------------------------------------------------------------
// Output shape.

#[test]
fn odd_requests_do_not_panic() {
    let small = one_node(8);
    for input in [PlanInput::default(), small] {
        for deadline in [i64::MIN, -1, 0, MONDAY, i64::MAX] {
            for (growth, horizon) in [(f64::NAN, u32::MAX), (1e9, 0), (-99.999, 1), (f64::INFINITY, 1825)] {
                let request = ForecastRequest {
                    growth_percent_per_year: growth,
                    horizon_days: horizon,
                    deadline: Some(deadline),
                    what_if: vec![WhatIf::Remove(String::new()), WhatIf::Cordon("n".into())],
                };
                let f = forecast(&input, &request);
                assert!(!f.render_table().is_empty());
                assert!(serde_json::to_string(&f).is_ok());
            }
        }
    }
}

#[test]
fn architecture_split_and_json_shape() {
    // An aarch64 system and an x86_64 one, neither fitting now.
    let mut a = system("ARM", "t", 6);
    a.architecture = ArchitectureRequirement::Aarch64;
    let mut x = system("X86", "t", 3);
    x.architecture = ArchitectureRequirement::X86_64;
    let input =
        input(vec![node("p", "Provincial", "320000", "江苏省", 4)], vec![tenant("t", "Provincial", "p")], vec![a, x]);
    let request = ForecastRequest {
        deadline: Some(MONDAY + 30 * DAY),
        growth_percent_per_year: 10.0,
        ..ForecastRequest::default()
    };
    let f = forecast(&input, &request);
    let cap = f.capacity.as_ref().expect("a capacity answer");
    assert_eq!(cap.outcome, CapacityOutcome::ExtraCapacity);
    let n = &cap.nodes[0];
    assert_eq!(n.extra.cpu, 5000, "9 cores on 4");
    assert_eq!(n.by_architecture.aarch64.cpu, 5000, "all of it is what the aarch64 system needs at most");
    assert_eq!(n.by_architecture.x86_64.cpu, 0);
    assert_eq!(cap.total_by_architecture, n.by_architecture);
    let v = serde_json::to_value(&f).expect("json");
    for key in ["runOut", "horizonEnd", "plansRun", "growthPercentPerYear", "whatIf"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let c = &v["capacity"];
    assert_eq!(c["outcome"], "extraCapacity");
    assert!(c["nodes"][0]["byArchitecture"]["aarch64"]["cpu"].is_u64());
    assert!(c["nodes"][0]["byArchitecture"]["x86_64"].is_object());
    assert!(c["nodes"][0]["capacityAfter"].is_object());
    assert_eq!(v["runOut"][0]["resources"][0]["resource"], "cpu");
    // The request reads its defaults from JSON.
    let r: ForecastRequest =
        serde_json::from_value(json!({"deadline": 5, "whatIf": [{"cordon": "p"}]})).expect("request");
    assert_eq!((r.horizon_days, r.deadline, r.what_if.len()), (1825, Some(5), 1));
    // Same input, same answer.
    assert_eq!(serde_json::to_string(&forecast(&input, &request)).ok(), serde_json::to_string(&f).ok());
    let table = f.render_table();
    assert!(table.contains("320000 江苏省 (p)") && table.contains("must be aarch64 (信创): 5 cpu"), "{table}");
}
