//! Scheduling in time, dependencies, waves, windows, bounds, output shape and determinism.

mod common;

use common::*;
use suyun_planner::model::{PlanInput, TenantLevel, Wave};
use suyun_planner::{Reason, first_fit, plan, replication_seconds};

fn one_node_input(systems: Vec<suyun_planner::model::System>) -> PlanInput {
    input(two_nodes(1000, 1000), vec![tenant("t", TenantLevel::City, "sz")], systems)
}

fn wave(name: &str, order: i32) -> Wave {
    Wave { name: name.into(), order, not_before: None, windows: vec![], max_concurrent: None }
}

#[test]
fn dependents_start_after_their_dependencies_complete() {
    let mut b = system("B", "t", 1);
    b.depends_on = vec!["A".into()];
    let mut c = system("C", "t", 1);
    c.depends_on = vec!["A".into(), "B".into()];
    let plan = plan(&one_node_input(vec![c, b, system("A", "t", 1)]));
    let (a, b, c) = (assignment(&plan, "A"), assignment(&plan, "B"), assignment(&plan, "C"));
    assert_eq!(a.planned_start, Some(MONDAY));
    assert_eq!(b.planned_start, a.planned_completion);
    assert_eq!(c.planned_start, b.planned_completion);
    // Three fixed phases of 30 + 60 + 30 minutes each, in a chain.
    assert_eq!(plan.makespan_hours, 6.0);
    assert_eq!(plan.lower_bound_hours, 6.0);
}

#[test]
fn a_dependency_cycle_blocks_every_member_and_is_spelled_out() {
    let mut a = system("A", "t", 1);
    a.depends_on = vec!["B".into()];
    let mut b = system("B", "t", 1);
    b.depends_on = vec!["C".into()];
    let mut c = system("C", "t", 1);
    c.depends_on = vec!["A".into()];
    let mut d = system("D", "t", 1);
    d.depends_on = vec!["C".into()];
    let mut e = system("E", "t", 1);
    e.depends_on = vec!["X-1".into(), "X-0".into()];
    let plan = plan(&one_node_input(vec![a, b, c, d, e]));
    assert_eq!(
        refusal(&plan, "A").unwrap(),
        (Reason::DependencyCycle, "spec.dependsOn forms a dependency cycle A → B → C → A")
    );
    assert_eq!(
        refusal(&plan, "B").unwrap(),
        (Reason::DependencyCycle, "spec.dependsOn forms a dependency cycle B → C → A → B")
    );
    assert_eq!(reason(&plan, "C"), Some(Reason::DependencyCycle));
    assert_eq!(
        refusal(&plan, "D").unwrap(),
        (Reason::DependencyNotReady, "depends on C, which is not placed (DependencyCycle)")
    );
    assert_eq!(
        refusal(&plan, "E").unwrap(),
        (Reason::UnknownDependency, "spec.dependsOn names X-0, X-1, which do(es) not exist")
    );
}

#[test]
fn a_node_runs_at_most_max_concurrent_migrations_at_once() {
    let mut input = one_node_input((0..5).map(|i| system(&format!("S{i}"), "t", 1)).collect());
    input.nodes[1].max_concurrent_migrations = 2;
    let plan = plan(&input);
    let mut starts: Vec<i64> = plan.assignments.iter().filter_map(|a| a.planned_start).collect();
    starts.sort_unstable();
    assert_eq!(starts, vec![MONDAY, MONDAY, MONDAY + 2 * HOUR, MONDAY + 2 * HOUR, MONDAY + 4 * HOUR]);
    assert_eq!(plan.lower_bound_hours, 5.0, "10 hours of work over 2 slots");
    assert_eq!(plan.makespan_hours, 6.0);
}

#[test]
fn a_wave_runs_at_most_max_concurrent_systems_at_once() {
    let mut input = one_node_input(
        (0..3)
            .map(|i| {
                let mut s = system(&format!("S{i}"), "t", 1);
                s.wave = Some("w".into());
                s
            })
            .collect(),
    );
    let mut w = wave("w", 1);
    w.max_concurrent = Some(1);
    input.waves = vec![w];
    let plan = plan(&input);
    let mut starts: Vec<i64> = plan.assignments.iter().filter_map(|a| a.planned_start).collect();
    starts.sort_unstable();
    assert_eq!(starts, vec![MONDAY, MONDAY + 2 * HOUR, MONDAY + 4 * HOUR]);
}

#[test]
fn replication_time_shares_the_node_bandwidth_among_its_slots() {
    assert_eq!(replication_seconds(100_000_000_000, 1000, 1), 800);
    assert_eq!(replication_seconds(100_000_000_000, 1000, 4), 3200);
    assert_eq!(replication_seconds(0, 0, 4), 0);
    let mut s = system("DATA", "t", 1);
    s.data_volume = 100_000_000_000;
    let mut input = one_node_input(vec![s]);
    input.nodes[1].migration_bandwidth_mbps = 1000;
    input.nodes[1].max_concurrent_migrations = 4;
    let plan = plan(&input);
    let r = assignment(&plan, "DATA").replicating.unwrap();
    assert_eq!(r.end - r.start, 3200);
}

#[test]
fn cutovers_happen_only_inside_node_and_wave_windows() {
    let mut s = system("NIGHT", "t", 1);
    s.wave = Some("w".into());
    let mut input = one_node_input(vec![s]);
    // Node: every day 20:00–04:00; wave: weekends only. First common hour: Saturday 00:00.
    input.nodes[1].maintenance_windows = vec![window(&[], 20 * 60, 8 * 60)];
    let mut w = wave("w", 1);
    w.windows = vec![window(&[5, 6], 0, 24 * 60)];
    input.waves = vec![w];
    let plan = plan(&input);
    let a = assignment(&plan, "NIGHT");
    let cut = a.cutting_over.unwrap();
    assert_eq!(cut.start, MONDAY + 5 * 24 * HOUR);
    assert_eq!(a.replicating.unwrap().end, cut.start, "no slot idles before the cutover");
    assert_eq!(a.planned_start, Some(cut.start - HOUR / 2));

    // A window shorter than the cutover admits nothing.
    let mut short = one_node_input(vec![system("SHORT", "t", 1)]);
    short.nodes[1].maintenance_windows = vec![window(&[], 60, 30)];
    let (reason, message) = refusal(&plan_of(&short), "SHORT").map(|(r, m)| (r, m.to_owned())).unwrap();
    assert_eq!(reason, Reason::NoCutoverWindow);
    assert!(message.contains("the longest window on 320500 苏州市 is 30m"), "{message}");
}

fn plan_of(input: &PlanInput) -> suyun_planner::Plan {
    plan(input)
}

#[test]
fn higher_order_waves_start_after_lower_order_waves_started_and_not_before() {
    let mut systems = Vec::new();
    for i in 0..4 {
        let mut s = system(&format!("ONE-{i}"), "t", 1);
        s.wave = Some("one".into());
        systems.push(s);
    }
    let mut late = system("TWO-0", "t", 1);
    late.wave = Some("two".into());
    let mut later = system("THREE-0", "t", 1);
    later.wave = Some("three".into());
    systems.extend([late, later]);
    let mut input = one_node_input(systems);
    input.nodes[1].max_concurrent_migrations = 3;
    let mut three = wave("three", 3);
    three.not_before = Some(MONDAY + 100 * HOUR);
    input.waves = vec![wave("two", 2), wave("one", 1), three];
    let plan = plan(&input);
    let last_one = (0..4).map(|i| assignment(&plan, &format!("ONE-{i}")).planned_start.unwrap()).max().unwrap();
    assert_eq!(last_one, MONDAY + 2 * HOUR);
    assert_eq!(assignment(&plan, "TWO-0").planned_start, Some(last_one));
    assert_eq!(assignment(&plan, "THREE-0").planned_start, Some(MONDAY + 100 * HOUR));
    let names: Vec<&str> = plan.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, vec!["one", "two", "three"]);
    assert_eq!(plan.waves[0].start, Some(MONDAY));
}

#[test]
fn depending_on_a_later_wave_is_a_conflict() {
    let mut early = system("EARLY", "t", 1);
    early.wave = Some("one".into());
    early.depends_on = vec!["LATE".into()];
    let mut late = system("LATE", "t", 1);
    late.wave = Some("two".into());
    let mut input = one_node_input(vec![early, late]);
    input.waves = vec![wave("one", 1), wave("two", 2)];
    let plan = plan(&input);
    let (reason, message) = refusal(&plan, "EARLY").unwrap();
    assert_eq!(reason, Reason::WaveOrderConflict);
    assert!(message.contains("wave two (order 2), after its own wave one (order 1)"), "{message}");
    assert!(node_of(&plan, "LATE").is_some());
}

#[test]
fn output_is_identical_whatever_the_input_order() {
    let mut input = suyun_planner::synthetic::jiangsu(3);
    input.systems.truncate(1500);
    let a = serde_json::to_string(&plan(&input)).unwrap();
    input.systems.reverse();
    input.nodes.reverse();
    input.tenants.reverse();
    input.waves.reverse();
    let b = serde_json::to_string(&plan(&input)).unwrap();
    assert!(a == b, "plans differ after reordering the input");
}

#[test]
fn json_uses_the_documented_field_names() {
    let plan = plan(&one_node_input(vec![system("A", "t", 1), system("B", "t", 10_000)]));
    let json: serde_json::Value = serde_json::to_value(&plan).unwrap();
    for key in [
        "systems",
        "placed",
        "unplaceable",
        "waves",
        "makespanHours",
        "lowerBoundHours",
        "nodes",
        "tenants",
        "assignments",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["unplaceable"][0]["systemId"], "B");
    assert_eq!(json["unplaceable"][0]["reason"], "InsufficientCapacity");
    assert_eq!(json["nodes"][1]["regionCode"], "320500");
    assert!(json["nodes"][1]["utilization"]["cpu"].is_number());
    assert!(json["assignments"][0]["cuttingOver"]["start"].is_number());
    let table = plan.render_table();
    assert!(table.contains("苏州市") && table.contains("InsufficientCapacity"), "{table}");
}

#[test]
fn first_fit_ignores_everything_but_capacity_in_input_order() {
    let mut arm = system("ARM", "t", 4);
    arm.architecture = suyun_planner::model::ArchitectureRequirement::Aarch64;
    let mut input = one_node_input(vec![system("Z", "t", 6), arm, system("Y", "t", 6)]);
    input.nodes[0].architectures = vec![suyun_planner::model::Architecture::X86_64];
    input.nodes[0].allocatable.cpu = 8000;
    let baseline = first_fit(&input);
    // Provincial node first in input order: locality and architecture are ignored.
    assert_eq!(node_of(&baseline, "Z"), Some("prov"));
    assert_eq!(node_of(&baseline, "ARM"), Some("sz"));
    assert_eq!(node_of(&baseline, "Y"), Some("sz"));
    assert_eq!(baseline.algorithm, suyun_planner::Algorithm::FirstFit);
    assert!(baseline.assignments.iter().all(|a| a.planned_start.is_none()));
}
