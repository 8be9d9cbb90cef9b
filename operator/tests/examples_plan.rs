//! The Jiangsu example manifests plan cleanly: every reference resolves, every system that moves
//! is placed and scheduled, and the accounts hold.

use std::path::PathBuf;

use suyun_operator::{manifests, plan_input};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/jiangsu")
}

#[test]
fn jiangsu_examples_plan_cleanly() {
    let objects = manifests::load(&[examples()]).unwrap();
    assert_eq!(objects.cloud_nodes.len(), 14);
    assert!(plan_input::check_references(&objects).is_empty(), "{:?}", plan_input::check_references(&objects));
    // 2026-12-01T00:00:00+08:00
    let input = plan_input::plan_input(&objects, 1_796_054_400).unwrap();
    let plan = suyun_planner::plan(&input);
    let unplaceable: Vec<String> =
        plan.unplaceable.iter().map(|u| format!("{} {:?}: {}", u.system_id, u.reason, u.message)).collect();
    assert!(unplaceable.is_empty(), "example systems that do not plan:\n{}", unplaceable.join("\n"));
    assert_eq!(plan.not_migrated.len(), 2, "one Retire and one Retain system");
    assert_eq!(plan.placed + plan.not_migrated.len(), objects.systems.len());
    for node in &plan.nodes {
        assert!(
            node.allocated.cpu <= node.allocatable.cpu && node.allocated.memory <= node.allocatable.memory,
            "{node:?}"
        );
    }
    assert!(plan.waves.iter().all(|w| w.systems > 0), "both waves select systems: {:?}", plan.waves);
}

#[test]
fn planning_the_examples_is_deterministic_whatever_the_file_order() {
    let objects = manifests::load(&[examples()]).unwrap();
    let mut reversed = objects.clone();
    reversed.systems.reverse();
    reversed.cloud_nodes.reverse();
    reversed.tenants.reverse();
    let a =
        serde_json::to_string(&suyun_planner::plan(&plan_input::plan_input(&objects, 1_796_054_400).unwrap())).unwrap();
    let b = serde_json::to_string(&suyun_planner::plan(&plan_input::plan_input(&reversed, 1_796_054_400).unwrap()))
        .unwrap();
    assert_eq!(a, b);
}
