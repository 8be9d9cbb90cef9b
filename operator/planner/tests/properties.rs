//! Property tests: invariants of every plan over random small inputs, checked against the
//! input by code independent of the planner's own (including a minute-by-minute window check).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{GI, Gen, MONDAY};
use proptest::prelude::*;
use suyun_planner::model::Strategy;
use suyun_planner::model::*;
use suyun_planner::{Plan, plan};

fn random_input(seed: u64, systems: usize) -> PlanInput {
    let mut g = Gen(seed);
    let cities = 1 + g.below(3) as usize;
    let mut nodes = Vec::new();
    for k in 0..=cities {
        let cores = 8 + g.below(40);
        let mut archs = vec![];
        if g.chance(80) {
            archs.push(Architecture::X86_64);
        }
        if archs.is_empty() || g.chance(40) {
            archs.push(Architecture::Aarch64);
        }
        nodes.push(Node {
            name: if k == 0 { "p".into() } else { format!("c{k}") },
            tier: if k == 0 { Tier::Provincial } else { Tier::City },
            region_code: if k == 0 { "320000".into() } else { format!("320{k}00") },
            display_name: format!("节点{k}"),
            parent: None,
            allocatable: Resources { cpu: cores * 1000, memory: cores * 4 * GI, storage: 500 * GI, gpu: g.below(2) },
            security_level: if g.chance(80) { 3 } else { 2 },
            architectures: archs,
            max_concurrent_migrations: 1 + g.below(3) as u32,
            migration_bandwidth_mbps: 100 + g.below(2000),
            maintenance_windows: if g.chance(40) { g.windows() } else { vec![] },
            cordoned: g.chance(5),
            unreachable: g.chance(5),
            machines: vec![],
        });
    }
    let tenants: Vec<Tenant> = (0..1 + g.below(4))
        .map(|t| {
            let level = [TenantLevel::Provincial, TenantLevel::City, TenantLevel::County][g.below(3) as usize];
            let home = if level == TenantLevel::Provincial { 0 } else { 1 + g.below(cities as u64) as usize };
            Tenant {
                name: format!("t{t}"),
                display_name: format!("租户{t}"),
                level,
                region_code: String::new(),
                home_node: nodes[home].name.clone(),
                quota: Quota {
                    cpu: (10 + g.below(90)) * 1000,
                    memory: 400 * GI,
                    storage: 400 * GI,
                    max_systems: 2 + g.below(20),
                },
                security_level: 3,
            }
        })
        .collect();
    let waves: Vec<Wave> = (0..g.below(4))
        .map(|w| Wave {
            name: format!("w{w}"),
            order: g.below(4) as i32,
            not_before: g.chance(30).then(|| MONDAY + 3600 * g.below(48) as i64),
            windows: if g.chance(30) { g.windows() } else { vec![] },
            max_concurrent: g.chance(30).then(|| 1 + g.below(3) as u32),
        })
        .collect();
    let id = |i: u64| format!("S{i:02}");
    let n = systems as u64;
    let systems = (0..n)
        .map(|i| {
            let mut s = System {
                system_id: id(i),
                name: id(i).to_lowercase(),
                tenant: if g.chance(4) { "nobody".into() } else { format!("t{}", g.below(tenants.len() as u64)) },
                security_level: [1, 2, 2, 2, 3][g.below(5) as usize],
                architecture: [
                    ArchitectureRequirement::Any,
                    ArchitectureRequirement::Any,
                    ArchitectureRequirement::X86_64,
                    ArchitectureRequirement::Aarch64,
                ][g.below(4) as usize],
                resources: Resources {
                    cpu: (1 + g.below(8)) * 1000,
                    memory: (1 + g.below(16)) * GI,
                    storage: (1 + g.below(100)) * GI,
                    gpu: u64::from(g.chance(5)),
                },
                data_volume: g.below(200) * 1_000_000_000,
                priority: 100 * g.below(11) as u32,
                strategy: if g.chance(10) { Strategy::Retire } else { Strategy::Rehost },
                ..System::default()
            };
            for _ in 0..[0, 0, 0, 1, 1, 2][g.below(6) as usize] {
                let roll = g.below(100);
                s.depends_on.push(match roll {
                    0..3 => "GHOST".into(),
                    3..12 => id(g.below(n)),
                    _ if i > 0 => id(g.below(i)),
                    _ => continue,
                });
            }
            if g.chance(12) {
                s.same_node_as.push(id(g.below(n)));
            }
            if g.chance(12) {
                s.anti_affinity_with.push(id(g.below(n)));
            }
            s.placement.allow_spillover = g.chance(50);
            if g.chance(5) {
                s.placement.allowed_nodes.push(nodes[g.below(nodes.len() as u64) as usize].name.clone());
            }
            if g.chance(10) {
                s.placement.preferred_node = Some(nodes[g.below(nodes.len() as u64) as usize].name.clone());
            }
            if !waves.is_empty() && g.chance(70) {
                s.wave = Some(format!("w{}", g.below(waves.len() as u64)));
            }
            s
        })
        .collect();
    PlanInput {
        settings: Settings { now: MONDAY, ..Settings::default() },
        nodes,
        tenants,
        systems,
        waves,
        ..PlanInput::default()
    }
}

/// Whether local minute-of-week `m` lies in `windows` (the oracle, minute by minute).
fn open(windows: &[Window], m: i64) -> bool {
    windows.iter().any(|w| {
        let days: Vec<i64> =
            if w.days.is_empty() { (0..7).collect() } else { w.days.iter().map(|d| i64::from(*d)).collect() };
        days.iter()
            .any(|d| (m - (d * 1440 + i64::from(w.start_minute))).rem_euclid(10_080) < i64::from(w.duration_minutes))
    })
}

fn minute_of_week(t: i64, offset_minutes: i32) -> i64 {
    let local_minutes = (t + i64::from(offset_minutes) * 60).div_euclid(60);
    // 1970-01-01 was a Thursday (day 3 when Monday is 0).
    (local_minutes + 3 * 1440).rem_euclid(10_080)
}

fn max_overlap(intervals: &mut [(i64, i64)]) -> usize {
    let mut events: Vec<(i64, i32)> = intervals.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    events.sort_unstable_by_key(|(t, d)| (*t, *d));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn check_invariants(input: &PlanInput, plan: &Plan) -> Result<(), TestCaseError> {
    let systems: BTreeMap<&str, &System> = input.systems.iter().map(|s| (s.system_id.as_str(), s)).collect();
    let nodes: BTreeMap<&str, &Node> = input.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let tenants: BTreeMap<&str, &Tenant> = input.tenants.iter().map(|t| (t.name.as_str(), t)).collect();
    let waves: BTreeMap<&str, &Wave> = input.waves.iter().map(|w| (w.name.as_str(), w)).collect();
    let at: BTreeMap<&str, &suyun_planner::Assignment> =
        plan.assignments.iter().map(|a| (a.system_id.as_str(), a)).collect();
    prop_assert_eq!(plan.placed + plan.unplaceable.len() + plan.not_migrated.len(), plan.systems);

    let mut used: BTreeMap<&str, Resources> = BTreeMap::new();
    let mut tenant_used: BTreeMap<&str, (Resources, u64)> = BTreeMap::new();
    for a in &plan.assignments {
        let s = systems[a.system_id.as_str()];
        let r = used.entry(&a.node).or_default();
        *r = r.plus(s.resources);
        let t = tenant_used.entry(&s.tenant).or_default();
        t.0 = t.0.plus(s.resources);
        t.1 += 1;
        let node = nodes[a.node.as_str()];
        let tenant = tenants[s.tenant.as_str()];
        // Placement rules for every newly placed system.
        prop_assert!(s.security_level <= node.security_level, "{} level", s.system_id);
        prop_assert!(!node.cordoned);
        match s.architecture {
            ArchitectureRequirement::Any => {}
            ArchitectureRequirement::X86_64 => prop_assert!(node.architectures.contains(&Architecture::X86_64)),
            ArchitectureRequirement::Aarch64 => prop_assert!(node.architectures.contains(&Architecture::Aarch64)),
        }
        let home = a.node == tenant.home_node;
        let spilled =
            tenant.level != TenantLevel::Provincial && s.placement.allow_spillover && node.tier == Tier::Provincial;
        prop_assert!(home || spilled, "{} on {} breaks locality", s.system_id, a.node);
        prop_assert!(s.placement.allowed_nodes.is_empty() || s.placement.allowed_nodes.contains(&a.node));
        for other in s.anti_affinity_with.iter().filter(|o| **o != s.system_id) {
            prop_assert!(at.get(other.as_str()).is_none_or(|b| b.node != a.node), "{} anti {}", s.system_id, other);
        }
        for other in &s.same_node_as {
            if systems[other.as_str()].strategy.migrates() {
                prop_assert_eq!(at.get(other.as_str()).map(|b| b.node.as_str()), Some(a.node.as_str()));
            }
        }
        // Dependencies complete before the dependent starts.
        for dep in &s.depends_on {
            let Some(d) = systems.get(dep.as_str()) else {
                return Err(TestCaseError::fail(format!("{} placed with unknown dependency", s.system_id)));
            };
            if d.strategy.migrates() {
                let done = at.get(dep.as_str()).and_then(|b| b.planned_completion);
                prop_assert!(done.is_some() && done <= a.planned_start, "{} before {}", s.system_id, dep);
            }
        }
        let start = a.planned_start.unwrap();
        prop_assert!(start >= input.settings.now);
        let (p, r, c, v) =
            (a.provisioning.unwrap(), a.replicating.unwrap(), a.cutting_over.unwrap(), a.verifying.unwrap());
        prop_assert!(
            p.start == start
                && p.end == r.start
                && r.end <= c.start
                && c.end == v.start
                && Some(v.end) == a.planned_completion
        );
        // Cutover inside node ∩ wave windows, minute by minute.
        let wave = s.wave.as_deref().map(|w| waves[w]);
        for minute in (c.start..c.end).step_by(60) {
            let m = minute_of_week(minute, input.settings.utc_offset_minutes);
            prop_assert!(node.maintenance_windows.is_empty() || open(&node.maintenance_windows, m));
            if let Some(w) = wave {
                prop_assert!(
                    w.windows.is_empty() || open(&w.windows, m),
                    "{} cuts over outside wave {}",
                    s.system_id,
                    w.name
                );
            }
        }
        if let Some(nb) = wave.and_then(|w| w.not_before) {
            prop_assert!(start >= nb);
        }
    }
    for (name, r) in &used {
        prop_assert!(r.fits_in(nodes[name].allocatable), "node {} over allocatable", name);
    }
    for (name, (r, count)) in &tenant_used {
        let q = tenants[name].quota;
        prop_assert!(
            r.cpu <= q.cpu && r.memory <= q.memory && r.storage <= q.storage && *count <= q.max_systems,
            "tenant {} over quota",
            name
        );
    }
    // Concurrency per node and per wave at every instant.
    let mut per_node: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    let mut per_wave: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    let mut wave_starts: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for a in &plan.assignments {
        let span = (a.planned_start.unwrap(), a.planned_completion.unwrap());
        per_node.entry(&a.node).or_default().push(span);
        if let Some(w) = a.wave.as_deref() {
            per_wave.entry(w).or_default().push(span);
            let e = wave_starts.entry(waves[w].order).or_insert((i64::MAX, i64::MIN));
            *e = (e.0.min(span.0), e.1.max(span.0));
        }
    }
    for (name, spans) in &mut per_node {
        prop_assert!(max_overlap(spans) <= nodes[name].max_concurrent_migrations as usize, "node {} concurrency", name);
    }
    for (name, spans) in &mut per_wave {
        if let Some(limit) = waves[name].max_concurrent {
            prop_assert!(max_overlap(spans) <= limit as usize, "wave {} concurrency", name);
        }
    }
    // A higher-order wave starts only after every system of lower-order waves started.
    let orders: Vec<(i64, i64)> = wave_starts.values().copied().collect();
    for pair in orders.windows(2) {
        prop_assert!(pair[1].0 >= pair[0].1, "wave order");
    }
    prop_assert!(plan.lower_bound_hours <= plan.makespan_hours + 1e-9);
    let reasons: BTreeSet<_> = plan.unplaceable.iter().map(|u| u.system_id.as_str()).collect();
    prop_assert_eq!(reasons.len(), plan.unplaceable.len());
    Ok(())
}

fn shuffled(input: &PlanInput, seed: u64) -> PlanInput {
    let mut g = Gen(seed ^ 0xABCD);
    let mut out = input.clone();
    fn shuffle<T>(v: &mut [T], g: &mut Gen) {
        for i in (1..v.len()).rev() {
            v.swap(i, g.below(i as u64 + 1) as usize);
        }
    }
    shuffle(&mut out.nodes, &mut g);
    shuffle(&mut out.tenants, &mut g);
    shuffle(&mut out.systems, &mut g);
    shuffle(&mut out.waves, &mut g);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_plan_respects_every_constraint(seed in any::<u64>(), n in 1usize..28) {
        let input = random_input(seed, n);
        let plan = plan(&input);
        check_invariants(&input, &plan)?;
    }

    #[test]
    fn plans_do_not_depend_on_input_order(seed in any::<u64>(), n in 1usize..28) {
        let input = random_input(seed, n);
        let a = serde_json::to_string(&plan(&input)).unwrap();
        let b = serde_json::to_string(&plan(&shuffled(&input, seed))).unwrap();
        prop_assert!(a == b);
    }
}

#[test]
fn random_inputs_exercise_the_planner() {
    // The generator must produce plans with both placements and refusals, or the
    // properties above would hold vacuously.
    let (mut placed, mut refused, mut windowed) = (0, 0, 0);
    for seed in 0..64 {
        let input = random_input(seed, 20);
        let plan = plan(&input);
        placed += plan.placed;
        refused += plan.unplaceable.len();
        windowed += plan
            .assignments
            .iter()
            .filter(|a| {
                let s = input.systems.iter().find(|s| s.system_id == a.system_id).unwrap();
                let node = input.nodes.iter().find(|n| n.name == a.node).unwrap();
                !node.maintenance_windows.is_empty() || s.wave.is_some()
            })
            .count();
    }
    let mut reasons = BTreeSet::new();
    for seed in 0..64 {
        reasons.extend(plan(&random_input(seed, 20)).reasons.into_keys());
    }
    assert!(reasons.len() >= 10, "{reasons:?}");
    assert!(placed > 250 && refused > 250 && windowed > 150, "{placed} {refused} {windowed}");
}
