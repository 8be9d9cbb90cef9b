//! The synthetic datasets have the documented shape, plan as documented, and are
//! deterministic by seed.

use std::collections::BTreeSet;

use suyun_planner::Reason;
use suyun_planner::model::{ArchitectureRequirement, TenantLevel, Tier};
use suyun_planner::synthetic::{jiangsu, national};

#[test]
fn jiangsu_has_the_reference_shape() {
    let input = jiangsu(1);
    assert_eq!(input.nodes.len(), 14);
    assert_eq!(input.systems.len(), 7_900);
    let provincial: Vec<_> = input.nodes.iter().filter(|n| n.tier == Tier::Provincial).collect();
    assert_eq!(provincial.len(), 1);
    assert_eq!((provincial[0].region_code.as_str(), provincial[0].display_name.as_str()), ("320000", "江苏省"));
    let regions: BTreeSet<&str> = input.nodes.iter().map(|n| n.region_code.as_str()).collect();
    for code in ["320100", "320500", "320700", "321300"] {
        assert!(regions.contains(code), "{code}");
    }
    let departments = input.tenants.iter().filter(|t| t.level == TenantLevel::Provincial).count();
    assert_eq!(departments, 94);
    assert!(input.tenants.iter().any(|t| t.display_name == "江苏省教育厅"));
    let cap = |code: &str| input.nodes.iter().find(|n| n.region_code == code).unwrap().allocatable.cpu;
    assert!(cap("320500") > 3 * cap("321300"), "苏州 is much bigger than 宿迁");
    let edges: usize = input.systems.iter().map(|s| s.depends_on.len()).sum();
    let per_system = edges as f64 / input.systems.len() as f64;
    assert!((1.1..1.5).contains(&per_system), "{per_system} edges per system");
    let arm = input.systems.iter().filter(|s| s.architecture == ArchitectureRequirement::Aarch64).count();
    assert!(arm > 300, "{arm} aarch64 systems");
    let levels: BTreeSet<u8> = input.systems.iter().map(|s| s.security_level).collect();
    assert_eq!(levels, BTreeSet::from([1, 2, 3]));
}

#[test]
fn jiangsu_mostly_fits_shows_its_reasons_and_schedules_near_the_bound() {
    let input = jiangsu(1);
    let plan = suyun_planner::plan(&input);
    let migrating = plan.systems - plan.not_migrated.len();
    assert!(plan.placed as f64 > 0.98 * migrating as f64, "{} of {migrating}", plan.placed);
    for reason in [
        Reason::InsufficientCapacity,
        Reason::QuotaExceeded,
        Reason::SecurityLevelMismatch,
        Reason::ArchitectureMismatch,
        Reason::DependencyCycle,
        Reason::UnknownDependency,
        Reason::DependencyNotReady,
    ] {
        assert!(plan.reasons.contains_key(&reason), "no {reason} in {:?}", plan.reasons);
    }
    assert!(
        plan.makespan_hours <= 1.10 * plan.lower_bound_hours,
        "{} vs {}",
        plan.makespan_hours,
        plan.lower_bound_hours
    );
    assert_eq!(plan.waves.len(), 4);
}

#[test]
fn datasets_are_deterministic_by_seed() {
    assert_eq!(jiangsu(7), jiangsu(7));
    assert_ne!(jiangsu(7), jiangsu(8));
}

#[test]
fn national_has_31_provinces_450_nodes_and_250000_systems() {
    let input = national(1);
    assert_eq!(input.systems.len(), 250_000);
    assert_eq!(input.nodes.iter().filter(|n| n.tier == Tier::Provincial).count(), 31);
    assert!((420..=460).contains(&input.nodes.len()), "{} nodes", input.nodes.len());
    let ids: BTreeSet<&str> = input.systems.iter().map(|s| s.system_id.as_str()).collect();
    assert_eq!(ids.len(), input.systems.len(), "system ids are unique");
}
