//! Builders shared by the integration tests.
#![allow(dead_code)]

use suyun_planner::model::{
    Architecture, Node, PlanInput, Quota, Resources, Settings, System, Tenant, TenantLevel, Tier, Window,
};
use suyun_planner::{Plan, Reason};

/// 2025-03-03 00:00 +08:00, a Monday.
pub const MONDAY: i64 = 1_740_931_200;
pub const GI: u64 = 1 << 30;
pub const HOUR: i64 = 3600;

pub fn cores(n: u64) -> Resources {
    Resources { cpu: n * 1000, memory: n * 2 * GI, storage: 10 * GI, gpu: 0 }
}

pub fn node(name: &str, tier: Tier, region: &str, display: &str, cpu_cores: u64) -> Node {
    Node {
        name: name.into(),
        tier,
        region_code: region.into(),
        display_name: display.into(),
        parent: None,
        allocatable: Resources { cpu: cpu_cores * 1000, memory: cpu_cores * 4 * GI, storage: 10_000 * GI, gpu: 0 },
        security_level: 3,
        architectures: vec![Architecture::X86_64, Architecture::Aarch64],
        max_concurrent_migrations: 8,
        migration_bandwidth_mbps: 8000,
        maintenance_windows: vec![],
        cordoned: false,
        unreachable: false,
        machines: vec![],
    }
}

/// The provincial node `prov` (320000 江苏省) and the city node `sz` (320500 苏州市).
pub fn two_nodes(prov_cores: u64, city_cores: u64) -> Vec<Node> {
    vec![
        node("prov", Tier::Provincial, "320000", "江苏省", prov_cores),
        node("sz", Tier::City, "320500", "苏州市", city_cores),
    ]
}

pub fn tenant(name: &str, level: TenantLevel, home: &str) -> Tenant {
    Tenant {
        name: name.into(),
        display_name: format!("{name} 厅局"),
        level,
        region_code: String::new(),
        home_node: home.into(),
        quota: Quota { cpu: 1_000_000_000, memory: u64::MAX / 4, storage: u64::MAX / 4, max_systems: 1_000_000 },
        security_level: 3,
    }
}

pub fn system(id: &str, tenant: &str, cpu_cores: u64) -> System {
    System {
        system_id: id.into(),
        name: id.to_lowercase(),
        tenant: tenant.into(),
        display_name: id.into(),
        security_level: 2,
        resources: cores(cpu_cores),
        data_volume: 0,
        priority: 500,
        ..System::default()
    }
}

pub fn input(nodes: Vec<Node>, tenants: Vec<Tenant>, systems: Vec<System>) -> PlanInput {
    PlanInput {
        settings: Settings { now: MONDAY, ..Settings::default() },
        nodes,
        tenants,
        systems,
        waves: vec![],
        ..PlanInput::default()
    }
}

pub fn window(days: &[u8], start_minute: u32, duration_minutes: u32) -> Window {
    Window { days: days.to_vec(), start_minute, duration_minutes }
}

/// The node a system was assigned to.
pub fn node_of<'p>(plan: &'p Plan, id: &str) -> Option<&'p str> {
    plan.assignments.iter().find(|a| a.system_id == id).map(|a| a.node.as_str())
}

/// The reason and message of an unplaceable system.
pub fn refusal<'p>(plan: &'p Plan, id: &str) -> Option<(Reason, &'p str)> {
    plan.unplaceable.iter().find(|u| u.system_id == id).map(|u| (u.reason, u.message.as_str()))
}

pub fn reason(plan: &Plan, id: &str) -> Option<Reason> {
    refusal(plan, id).map(|r| r.0)
}

pub fn assignment<'p>(plan: &'p Plan, id: &str) -> &'p suyun_planner::Assignment {
    plan.assignments
        .iter()
        .find(|a| a.system_id == id)
        .unwrap_or_else(|| panic!("{id} is not assigned: {:?}", refusal(plan, id)))
}

/// SplitMix64, to turn one proptest seed into a whole input.
pub struct Gen(pub u64);

impl Gen {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One or two random weekly windows.
    pub fn windows(&mut self) -> Vec<Window> {
        (0..1 + self.below(2))
            .map(|_| Window {
                days: (0..7).filter(|_| self.chance(40)).collect(),
                start_minute: 30 * self.below(48) as u32,
                duration_minutes: 60 + 30 * self.below(20) as u32,
            })
            .collect()
    }
}
