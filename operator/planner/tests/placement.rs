//! One test (at least) per placement constraint: each fails if the constraint is dropped.

mod common;

use common::*;
use suyun_planner::model::{Architecture, ArchitectureRequirement, Phase, Strategy, TenantLevel};
use suyun_planner::{Reason, plan};

#[test]
fn node_allocatable_limits_placement_and_the_message_has_numbers() {
    let mut sz = system("SZ-2", "sz-gaj", 6);
    sz.priority = 100;
    let input = input(
        two_nodes(1000, 8),
        vec![tenant("sz-gaj", TenantLevel::City, "sz")],
        vec![system("SZ-1", "sz-gaj", 6), sz],
    );
    let plan = plan(&input);
    assert_eq!(node_of(&plan, "SZ-1"), Some("sz"));
    let (reason, message) = refusal(&plan, "SZ-2").unwrap();
    assert_eq!(reason, Reason::InsufficientCapacity);
    assert_eq!(
        message,
        "province capacity: needs 6 cpu; the most free is 2 cpu (320500 苏州市), short by 4 cpu; spillover not allowed"
    );
    let sz_node = plan.nodes.iter().find(|n| n.name == "sz").unwrap();
    assert_eq!(sz_node.allocated.cpu, 6000);
    assert_eq!(sz_node.utilization.cpu, 75.0);
}

#[test]
fn higher_priority_is_placed_first_and_ties_go_by_system_id() {
    let mut low = system("A-low", "t", 6);
    low.priority = 100;
    let mut high = system("B-high", "t", 6);
    high.priority = 900;
    let same_a = system("C-tie", "t", 1);
    let same_b = system("D-tie", "t", 1);
    let input = input(two_nodes(1000, 7), vec![tenant("t", TenantLevel::City, "sz")], vec![low, high, same_b, same_a]);
    let plan = plan(&input);
    assert_eq!(node_of(&plan, "B-high"), Some("sz"));
    assert_eq!(reason(&plan, "A-low"), Some(Reason::InsufficientCapacity));
    assert_eq!(node_of(&plan, "C-tie"), Some("sz"));
    assert_eq!(reason(&plan, "D-tie"), Some(Reason::InsufficientCapacity));
}

#[test]
fn tenant_quota_cpu_and_system_count_are_enforced() {
    let mut t = tenant("t", TenantLevel::Provincial, "prov");
    t.quota.cpu = 8000;
    let mut u = tenant("u", TenantLevel::Provincial, "prov");
    u.quota.max_systems = 1;
    let input = input(
        two_nodes(1000, 8),
        vec![t, u],
        vec![system("T-1", "t", 6), system("T-2", "t", 6), system("U-1", "u", 1), system("U-2", "u", 1)],
    );
    let plan = plan(&input);
    assert_eq!(node_of(&plan, "T-1"), Some("prov"));
    let (reason, message) = refusal(&plan, "T-2").unwrap();
    assert_eq!(reason, Reason::QuotaExceeded);
    assert!(message.contains("has 2 cpu left of its 8 cpu quota"), "{message}");
    assert_eq!(node_of(&plan, "U-1"), Some("prov"));
    let (reason, message) = refusal(&plan, "U-2").unwrap();
    assert_eq!(reason, Reason::QuotaExceeded);
    assert!(message.contains("already has 1 of its 1 systems"), "{message}");
    let account = plan.tenants.iter().find(|a| a.name == "t").unwrap();
    assert_eq!(account.used.cpu, 6000);
    assert_eq!(account.used.systems, 1);
}

#[test]
fn security_level_above_the_node_certification_is_refused_or_spills_over() {
    let mut nodes = two_nodes(1000, 1000);
    nodes[1].security_level = 2;
    let mut strict = system("L3-home", "t", 1);
    strict.security_level = 3;
    let mut spill = system("L3-spill", "t", 1);
    spill.security_level = 3;
    spill.placement.allow_spillover = true;
    let input = input(nodes, vec![tenant("t", TenantLevel::City, "sz")], vec![strict, spill, system("L2", "t", 1)]);
    let plan = plan(&input);
    let (reason, message) = refusal(&plan, "L3-home").unwrap();
    assert_eq!(reason, Reason::SecurityLevelMismatch);
    assert_eq!(message, "needs 等保 level 3; 320500 苏州市 is certified to level 2; spillover not allowed");
    assert_eq!(node_of(&plan, "L3-spill"), Some("prov"));
    assert_eq!(node_of(&plan, "L2"), Some("sz"));
}

#[test]
fn architecture_must_be_offered_by_the_node() {
    let mut nodes = two_nodes(1000, 1000);
    nodes[1].architectures = vec![Architecture::X86_64];
    nodes[0].architectures = vec![Architecture::Aarch64];
    let mut arm = system("ARM", "city", 1);
    arm.architecture = ArchitectureRequirement::Aarch64;
    let mut x86 = system("X86", "prov-t", 1);
    x86.architecture = ArchitectureRequirement::X86_64;
    let any = system("ANY", "prov-t", 1);
    let input = input(
        nodes,
        vec![tenant("city", TenantLevel::City, "sz"), tenant("prov-t", TenantLevel::Provincial, "prov")],
        vec![arm, x86, any],
    );
    let plan = plan(&input);
    let (reason, message) = refusal(&plan, "ARM").unwrap();
    assert_eq!(reason, Reason::ArchitectureMismatch);
    assert!(message.starts_with("needs aarch64; 320500 苏州市 offers x86_64 only"), "{message}");
    assert_eq!(common::reason(&plan, "X86"), Some(Reason::ArchitectureMismatch));
    assert_eq!(node_of(&plan, "ANY"), Some("prov"));
}

/// A node that takes nothing new (cordoned, or its member cluster unreachable) keeps what it has.
fn takes_nothing_new(stop: fn(&mut suyun_planner::model::Node), why: &str) {
    let mut nodes = two_nodes(1000, 1000);
    stop(&mut nodes[1]);
    let mut done = system("DONE", "t", 2);
    done.phase = Phase::Completed;
    done.node = Some("sz".into());
    let input = input(nodes, vec![tenant("t", TenantLevel::City, "sz")], vec![done, system("NEW", "t", 1)]);
    let plan = plan(&input);
    let (reason, message) = refusal(&plan, "NEW").unwrap();
    assert_eq!(reason, Reason::NoEligibleNode);
    assert!(message.contains(&format!("320500 苏州市 ({why})")), "{message}");
    assert_eq!(node_of(&plan, "DONE"), Some("sz"));
    assert_eq!(plan.completed, 1);
}

#[test]
fn cordoned_nodes_take_nothing_new_but_keep_what_they_have() {
    takes_nothing_new(|n| n.cordoned = true, "cordoned");
}

#[test]
fn an_unreachable_member_takes_nothing_new_but_keeps_what_it_has() {
    takes_nothing_new(|n| n.unreachable = true, "its member cluster is unreachable");
}

#[test]
fn a_system_is_placed_only_where_one_machine_can_hold_it() {
    // 苏州市 has 16 cpu in total, but on four machines of 4 cpu (one has 6 free): an 8-cpu
    // system fits the sum and no machine.
    let mut nodes = two_nodes(1000, 16);
    let machine =
        |cores: u64| suyun_planner::model::Resources { cpu: cores * 1000, memory: 64 * GI, storage: 0, gpu: 0 };
    nodes[1].machines = vec![machine(4), machine(6), machine(4), machine(2)];
    let tenants = vec![tenant("t", TenantLevel::City, "sz")];
    let planned = plan(&input(nodes.clone(), tenants.clone(), vec![system("BIG", "t", 8), system("SMALL", "t", 6)]));
    let (reason, message) = refusal(&planned, "BIG").unwrap();
    assert_eq!(reason, Reason::NoMachineFits);
    assert!(message.starts_with("needs 8 cpu, 16 Gi memory on one machine;"), "{message}");
    assert!(
        message.contains("the most free on one of the 4 machines of 320500 苏州市 is 6 cpu, 64 Gi memory"),
        "{message}"
    );
    assert_eq!(node_of(&planned, "SMALL"), Some("sz"), "6 cpu fits the machine with 6 free");
    // No machine list (declared capacity): the sum is all there is to check.
    nodes[1].machines.clear();
    assert_eq!(node_of(&plan(&input(nodes, tenants, vec![system("BIG", "t", 8)])), "BIG"), Some("sz"));
}

#[test]
fn city_systems_stay_home_and_spill_over_only_when_home_is_full_and_allowed() {
    let mut a = system("A", "t", 6);
    a.placement.allow_spillover = true;
    a.priority = 900;
    let mut b = system("B", "t", 6);
    b.placement.allow_spillover = true;
    let mut c = system("C", "t", 6);
    c.priority = 100;
    let input = input(
        two_nodes(1000, 8),
        vec![tenant("t", TenantLevel::County, "sz"), tenant("p", TenantLevel::Provincial, "prov")],
        vec![a, b, c, system("P", "p", 1)],
    );
    let plan = plan(&input);
    assert_eq!(node_of(&plan, "A"), Some("sz"), "home first even with spillover allowed");
    assert_eq!(node_of(&plan, "B"), Some("prov"), "spills over when home is full");
    assert_eq!(reason(&plan, "C"), Some(Reason::InsufficientCapacity));
    assert_eq!(node_of(&plan, "P"), Some("prov"));
}

#[test]
fn allowed_nodes_restrict_and_the_preferred_node_is_tried_first() {
    let mut restricted = system("R", "t", 1);
    restricted.placement.allowed_nodes = vec!["prov".into()];
    let mut preferred = system("PREF", "t", 1);
    preferred.placement.allow_spillover = true;
    preferred.placement.preferred_node = Some("prov".into());
    let mut spill_allowed = system("SP", "t", 1);
    spill_allowed.placement.allow_spillover = true;
    spill_allowed.placement.allowed_nodes = vec!["prov".into()];
    let input = input(
        two_nodes(1000, 1000),
        vec![tenant("t", TenantLevel::City, "sz")],
        vec![restricted, preferred, spill_allowed],
    );
    let plan = plan(&input);
    let (reason, message) = refusal(&plan, "R").unwrap();
    assert_eq!(reason, Reason::NoEligibleNode);
    assert!(message.contains("exclude its home node 320500 苏州市"), "{message}");
    assert_eq!(node_of(&plan, "PREF"), Some("prov"));
    assert_eq!(node_of(&plan, "SP"), Some("prov"));
}

#[test]
fn same_node_groups_are_transitive_and_all_or_nothing() {
    let mut a = system("A", "t", 3);
    a.same_node_as = vec!["B".into()];
    a.placement.allow_spillover = true;
    let mut b = system("B", "t", 3);
    b.same_node_as = vec!["C".into()];
    b.placement.allow_spillover = true;
    let mut c = system("C", "t", 3);
    c.placement.allow_spillover = true;
    // Home has room for two of them, the provincial node for all three.
    let input_fit =
        input(two_nodes(10, 7), vec![tenant("t", TenantLevel::City, "sz")], vec![a.clone(), b.clone(), c.clone()]);
    let plan_fit = plan(&input_fit);
    for id in ["A", "B", "C"] {
        assert_eq!(node_of(&plan_fit, id), Some("prov"), "{id}");
    }
    // Nowhere has room for all three: none is placed, though each would fit alone.
    let input_none = input(two_nodes(7, 7), vec![tenant("t", TenantLevel::City, "sz")], vec![a, b, c]);
    let plan_none = plan(&input_none);
    assert_eq!(plan_none.placed, 0);
    for id in ["A", "B", "C"] {
        assert_eq!(reason(&plan_none, id), Some(Reason::InsufficientCapacity), "{id}");
    }
}

#[test]
fn a_blocked_member_blocks_its_same_node_group() {
    let mut a = system("A", "t", 1);
    a.same_node_as = vec!["B".into()];
    let mut b = system("B", "t", 1);
    b.depends_on = vec!["GHOST".into()];
    let plan = plan(&input(two_nodes(100, 100), vec![tenant("t", TenantLevel::City, "sz")], vec![a, b]));
    assert_eq!(reason(&plan, "B"), Some(Reason::UnknownDependency));
    assert_eq!(reason(&plan, "A"), Some(Reason::SameNodeGroupUnplaceable));
}

#[test]
fn anti_affinity_puts_systems_on_different_nodes() {
    let mut primary = system("PRIMARY", "t", 1);
    primary.priority = 900;
    let mut standby = system("STANDBY", "t", 1);
    standby.anti_affinity_with = vec!["PRIMARY".into()];
    standby.placement.allow_spillover = true;
    let mut stuck = system("STUCK", "t", 1);
    stuck.anti_affinity_with = vec!["PRIMARY".into()];
    let plan =
        plan(&input(two_nodes(100, 100), vec![tenant("t", TenantLevel::City, "sz")], vec![primary, standby, stuck]));
    assert_eq!(node_of(&plan, "PRIMARY"), Some("sz"));
    assert_eq!(node_of(&plan, "STANDBY"), Some("prov"));
    let (reason, message) = refusal(&plan, "STUCK").unwrap();
    assert_eq!(reason, Reason::AntiAffinity);
    assert!(message.contains("PRIMARY (on 320500 苏州市)"), "{message}");
}

#[test]
fn systems_in_flight_or_completed_keep_their_node_and_are_accounted_first() {
    let mut moving = system("MOVING", "t", 5);
    moving.phase = Phase::Replicating;
    moving.node = Some("sz".into());
    moving.priority = 0;
    let mut fresh = system("FRESH", "t", 5);
    fresh.priority = 1000;
    let mut rerun = system("RERUN", "t", 1);
    rerun.phase = Phase::Scheduled;
    rerun.node = Some("sz".into());
    let plan = plan(&input(two_nodes(100, 8), vec![tenant("t", TenantLevel::City, "sz")], vec![moving, fresh, rerun]));
    assert_eq!(node_of(&plan, "MOVING"), Some("sz"));
    assert_eq!(reason(&plan, "FRESH"), Some(Reason::InsufficientCapacity));
    assert_eq!(node_of(&plan, "RERUN"), Some("sz"));
    assert_eq!(plan.in_flight, 1);
    let moving = assignment(&plan, "MOVING");
    assert_eq!(moving.planned_start, Some(MONDAY));
    assert!(moving.provisioning.is_none(), "phases behind it are not planned again");
    assert!(moving.replicating.is_some());
}

#[test]
fn retire_and_retain_are_reported_apart_and_never_placed() {
    let mut gone = system("GONE", "t", 1);
    gone.strategy = Strategy::Retire;
    let mut stays = system("STAYS", "t", 1);
    stays.strategy = Strategy::Retain;
    let mut user = system("USER", "t", 1);
    user.depends_on = vec!["GONE".into(), "STAYS".into()];
    let plan = plan(&input(two_nodes(100, 100), vec![tenant("t", TenantLevel::City, "sz")], vec![gone, stays, user]));
    assert!(plan.unplaceable.is_empty(), "{:?}", plan.unplaceable);
    let skipped: Vec<(&str, Strategy)> = plan.not_migrated.iter().map(|n| (n.system_id.as_str(), n.strategy)).collect();
    assert_eq!(skipped, vec![("GONE", Strategy::Retire), ("STAYS", Strategy::Retain)]);
    assert_eq!(plan.placed, 1);
    assert_eq!(node_of(&plan, "USER"), Some("sz"));
}

#[test]
fn a_dependency_that_cannot_be_placed_releases_its_dependents_room() {
    // BIG cannot fit; APP depends on it and would take the room SMALL needs.
    let mut big = system("BIG", "t", 50);
    big.priority = 1000;
    let mut app = system("APP", "t", 6);
    app.priority = 900;
    app.depends_on = vec!["BIG".into()];
    let mut small = system("SMALL", "t", 6);
    small.priority = 100;
    let plan = plan(&input(two_nodes(100, 8), vec![tenant("t", TenantLevel::City, "sz")], vec![big, app, small]));
    assert_eq!(reason(&plan, "BIG"), Some(Reason::InsufficientCapacity));
    let (reason, message) = refusal(&plan, "APP").unwrap();
    assert_eq!(reason, Reason::DependencyNotReady);
    assert_eq!(message, "depends on BIG, which is not placed (InsufficientCapacity)");
    assert_eq!(node_of(&plan, "SMALL"), Some("sz"));
}
