//! Deterministic synthetic datasets (same seed → same input, on every platform we build on).
//!
//! * [`jiangsu`] — the reference deployment: the provincial node 320000 江苏省 and the 13 city
//!   nodes, 7,900 systems of the 94 provincial departments and the city (and some county)
//!   departments.
//! * [`national`] — 31 provincial-level divisions of the same shape: 442 nodes and 250,000
//!   systems, one set of three waves per province.
//!
//! Sizes are skewed (log-normal cpu, memory per core, storage and data volume), about 1.3
//! dependency edges per system (mostly on the tenant's shared platforms, some on the
//! province's), 等保 levels mostly 2, some 3 and 1, 8 % aarch64 (信创) systems. Node capacity is
//! derived from the demand homed on each node (≈ 1.3×, tight for the two smallest cities), so
//! the set mostly fits; a few systems per province are built not to fit, so that every common
//! reason shows. `docs/planner.md` lists the exact mixes.

mod misfits;
mod names;
pub mod rng;

use crate::model::{
    Architecture, ArchitectureRequirement, Node, Placement, PlanInput, Quota, Resources, Settings, Strategy, System,
    Tenant, TenantLevel, Tier, Wave, Window,
};
use misfits::MISFITS;
use names::{CITY_DEPARTMENTS, JIANGSU_CITIES, JIANGSU_COUNTIES, PROVINCES, PROVINCIAL_DEPARTMENTS, SYSTEM_KINDS};
use rng::Rng;

/// Planning starts Monday 2025-03-03 08:00 China Standard Time.
pub const NOW: i64 = 1_740_960_000;
const GI: u64 = 1 << 30;
const TI: u64 = 1 << 40;
/// Systems in the Jiangsu set.
pub const JIANGSU_SYSTEMS: usize = 7_900;
/// Systems in the national set.
pub const NATIONAL_SYSTEMS: usize = 250_000;

/// The Jiangsu reference dataset (DESIGN §1).
pub fn jiangsu(seed: u64) -> PlanInput {
    let mut input = empty();
    Province::new(province_spec(9, seed), JIANGSU_SYSTEMS).generate(&mut input, seed);
    input
}

/// The national dataset: 31 provinces, 442 nodes, 250,000 systems.
pub fn national(seed: u64) -> PlanInput {
    let mut input = empty();
    let weights: Vec<usize> = PROVINCES.iter().map(|p| p.3 + 6).collect();
    let total: usize = weights.iter().sum();
    let mut left = NATIONAL_SYSTEMS;
    for (k, w) in weights.iter().enumerate() {
        let systems = if k + 1 == PROVINCES.len() { left } else { NATIONAL_SYSTEMS * w / total };
        left -= systems;
        Province::new(province_spec(k, seed), systems).generate(&mut input, seed);
    }
    input
}

/// Adds capacity governance to a synthetic set: one city budget per city node (90 % of the
/// node's allocatable, and a share of its provincial node of 4 % of that node's), with lending
/// (30 % lent, 20 % borrowed), every fourth city department short of cpu quota (so that it
/// borrows), and every 12th system Sensitive (the built-in residency rule keeps it in its
/// city). For benchmarks and tests of the governance checks at scale.
pub fn with_governance(mut input: PlanInput) -> PlanInput {
    use crate::model::{CityBudget, Classification, Lending, Limit, NodeShare};
    let part = |r: Resources, percent: u64| Limit {
        cpu: r.cpu / 100 * percent,
        memory: r.memory / 100 * percent,
        storage: r.storage / 100 * percent,
    };
    let provincial: Vec<&Node> = input.nodes.iter().filter(|n| n.tier == Tier::Provincial).collect();
    let mut budgets = Vec::new();
    for n in input.nodes.iter().filter(|n| n.tier == Tier::City) {
        let mut nodes = vec![NodeShare { node: n.name.clone(), limit: part(n.allocatable, 90) }];
        let parent = provincial.iter().find(|p| p.region_code.get(..2) == n.region_code.get(..2));
        if let Some(p) = parent {
            nodes.push(NodeShare { node: p.name.clone(), limit: part(p.allocatable, 4) });
        }
        budgets.push(CityBudget {
            name: format!("budget-{}", n.region_code),
            region_code: n.region_code.clone(),
            display_name: n.display_name.clone(),
            nodes,
            lending: Lending { lend_percent: 30, borrow_percent: 20, departments: Vec::new() },
        });
    }
    input.budgets = budgets;
    // Every fourth city department gets a cpu quota of 85 % of what its systems need: it
    // borrows from the others of its city, within 20 % of its quota.
    let mut demand: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for s in input.systems.iter().filter(|s| s.strategy.migrates()) {
        *demand.entry(s.tenant.as_str()).or_default() += s.resources.cpu;
    }
    let tight: Vec<(usize, u64)> = input
        .tenants
        .iter()
        .enumerate()
        .filter(|(_, t)| t.level != TenantLevel::Provincial)
        .enumerate()
        .filter(|(k, _)| k % 4 == 0)
        .map(|(_, (i, t))| (i, demand.get(t.name.as_str()).copied().unwrap_or(0) / 100 * 85))
        .collect();
    for (i, cpu) in tight {
        input.tenants[i].quota.cpu = cpu;
    }
    for (i, s) in input.systems.iter_mut().enumerate() {
        if i % 12 == 5 {
            s.classification = Classification::Sensitive;
        }
    }
    input
}

fn empty() -> PlanInput {
    PlanInput { settings: Settings { now: NOW, ..Settings::default() }, ..PlanInput::default() }
}

struct City {
    code: String,
    name: String,
    weight: f64,
}

struct ProvinceSpec {
    code2: &'static str,
    name: &'static str,
    abbr: &'static str,
    cities: Vec<City>,
    /// (code, name, index of its city)
    counties: Vec<(String, String, usize)>,
}

fn province_spec(k: usize, seed: u64) -> ProvinceSpec {
    let (code2, name, abbr, count) = PROVINCES[k];
    if code2 == "32" {
        let cities = JIANGSU_CITIES
            .iter()
            .map(|(code, name, weight)| City { code: (*code).into(), name: (*name).into(), weight: *weight })
            .collect::<Vec<_>>();
        let counties = JIANGSU_COUNTIES
            .iter()
            .map(|(code, name)| {
                let city = cities.iter().position(|c| c.code[..4] == code[..4]).unwrap_or(0);
                ((*code).to_owned(), (*name).to_owned(), city)
            })
            .collect();
        return ProvinceSpec { code2, name, abbr, cities, counties };
    }
    let mut rng = Rng::new(seed, 1000 + k as u64);
    let cities: Vec<City> = (1..=count)
        .map(|i| City {
            code: format!("{code2}{i:02}00"),
            name: format!("{name}第{i}市"),
            weight: rng.log_normal(6.0, 0.5),
        })
        .collect();
    let counties = (0..count)
        .step_by(2)
        .map(|c| (format!("{code2}{:02}81", c + 1), format!("{}第1县", cities[c].name), c))
        .collect();
    ProvinceSpec { code2, name, abbr, cities, counties }
}

/// The waves of every province: order and label.
const WAVES: [(i32, &str); 4] = [(1, "pilot"), (2, "services"), (2, "internal"), (3, "core")];
const PILOT: usize = 0;
const SERVICES: usize = 1;
const INTERNAL: usize = 2;
const CORE: usize = 3;

/// Outside weekday office hours (09:00–18:00) and whole weekends: the citizen-facing services
/// wave.
fn off_hours() -> Vec<Window> {
    vec![
        Window { days: vec![0, 1, 2, 3, 4], start_minute: 18 * 60, duration_minutes: 15 * 60 },
        Window { days: vec![5, 6], start_minute: 0, duration_minutes: 24 * 60 },
        Window { days: vec![0], start_minute: 0, duration_minutes: 9 * 60 },
    ]
}

struct Province {
    spec: ProvinceSpec,
    systems: usize,
    /// Node names: provincial first, then cities in spec order.
    nodes: Vec<String>,
    first_system: usize,
    first_tenant: usize,
}

impl Province {
    fn new(spec: ProvinceSpec, systems: usize) -> Province {
        let mut nodes = vec![format!("cn-{}0000", spec.code2)];
        nodes.extend(spec.cities.iter().map(|c| format!("cn-{}", c.code)));
        Province { spec, systems, nodes, first_system: 0, first_tenant: 0 }
    }

    fn wave(&self, w: usize) -> String {
        let (order, label) = WAVES[w];
        format!("{}-{order}-{label}", self.spec.abbr.to_lowercase())
    }

    fn generate(mut self, input: &mut PlanInput, seed: u64) {
        let mut rng = Rng::new(seed, u64::from(self.spec.code2.parse::<u32>().unwrap_or(0)));
        self.first_system = input.systems.len();
        self.first_tenant = input.tenants.len();
        let spec = &self.spec;
        // Nodes: small = the two lightest cities (Jiangsu: 宿迁, 连云港).
        let mut by_weight: Vec<usize> = (0..spec.cities.len()).collect();
        by_weight.sort_by(|a, b| spec.cities[*a].weight.total_cmp(&spec.cities[*b].weight));
        let median = spec.cities[by_weight[by_weight.len() / 2]].weight;
        let mut levels = vec![3u8];
        let mut aarch64 = vec![true];
        for (c, city) in spec.cities.iter().enumerate() {
            let rank = by_weight.iter().position(|x| *x == c).unwrap_or(0);
            levels.push(if rank < 3 { 2 } else { 3 });
            aarch64.push(city.weight >= median);
        }
        for (k, name) in self.nodes.iter().enumerate() {
            let (code, display, tier) = if k == 0 {
                (format!("{}0000", spec.code2), spec.name.to_owned(), Tier::Provincial)
            } else {
                let city = &spec.cities[k - 1];
                (city.code.clone(), city.name.clone(), Tier::City)
            };
            let mut archs = vec![Architecture::X86_64];
            if aarch64[k] {
                archs.push(Architecture::Aarch64);
            }
            input.nodes.push(Node {
                name: name.clone(),
                tier,
                region_code: code,
                display_name: display,
                parent: (k > 0).then(|| self.nodes[0].clone()),
                allocatable: Resources::default(),
                security_level: levels[k],
                architectures: archs,
                max_concurrent_migrations: 4,
                migration_bandwidth_mbps: 1000,
                maintenance_windows: vec![],
                cordoned: false,
                unreachable: false,
                machines: vec![],
            });
        }
        for (w, (order, _)) in WAVES.iter().enumerate() {
            input.waves.push(Wave {
                name: self.wave(w),
                order: *order,
                not_before: (w == PILOT).then_some(NOW),
                // Citizen-facing services cut over off-hours; the rest any time.
                windows: if w == SERVICES { off_hours() } else { vec![] },
                max_concurrent: (w == CORE).then_some(self.systems as u32 / 10),
            });
        }
        self.tenants_and_systems(input, &mut rng, &levels, &aarch64);
        self.size_nodes_and_quotas(input, &mut rng);
        self.inject_misfits(input, &levels, &aarch64);
    }

    fn tenants_and_systems(&self, input: &mut PlanInput, rng: &mut Rng, levels: &[u8], aarch64: &[bool]) {
        let spec = &self.spec;
        let abbr = spec.abbr.to_lowercase();
        // (name, display, level, region, home node index)
        let mut tenants: Vec<(String, String, TenantLevel, String, usize)> = Vec::new();
        let province_code = format!("{}0000", spec.code2);
        for (d, dept) in PROVINCIAL_DEPARTMENTS.iter().enumerate() {
            let display = format!("{}{dept}", spec.name);
            tenants.push((
                format!("{abbr}-{province_code}-{d:03}"),
                display,
                TenantLevel::Provincial,
                province_code.clone(),
                0,
            ));
        }
        let provincial_tenants = tenants.len();
        for (c, city) in spec.cities.iter().enumerate() {
            let count = (12.0 + city.weight).round().clamp(12.0, 30.0) as usize;
            let offset = rng.below(CITY_DEPARTMENTS.len());
            for d in 0..count {
                let dept = CITY_DEPARTMENTS[(offset + d) % CITY_DEPARTMENTS.len()];
                tenants.push((
                    format!("{abbr}-{}-{d:03}", city.code),
                    format!("{}{dept}", city.name),
                    TenantLevel::City,
                    city.code.clone(),
                    c + 1,
                ));
            }
            for (k, (code, name, _)) in spec.counties.iter().enumerate().filter(|(_, x)| x.2 == c) {
                tenants.push((
                    format!("{abbr}-{}-{:03}", city.code, 100 + k),
                    format!("{name}人民政府"),
                    TenantLevel::County,
                    code.clone(),
                    c + 1,
                ));
            }
        }
        // Systems per tenant: 30 % provincial, the rest by city weight, skewed within.
        let regular = self.systems - MISFITS;
        let provincial_share = regular * 3 / 10;
        let city_total: f64 = spec.cities.iter().map(|c| c.weight).sum();
        let mut weights: Vec<f64> = Vec::with_capacity(tenants.len());
        for t in &tenants {
            let skew = rng.log_normal(1.0, 0.7);
            let w = if t.4 == 0 {
                provincial_share as f64 / provincial_tenants as f64
            } else {
                let city = &spec.cities[t.4 - 1];
                let city_tenants = tenants.iter().filter(|x| x.4 == t.4).count() as f64;
                (regular - provincial_share) as f64 * city.weight / city_total / city_tenants
            };
            weights.push(w * skew);
        }
        let scale = regular as f64 / weights.iter().sum::<f64>();
        let mut counts: Vec<usize> = weights.iter().map(|w| ((w * scale).round() as usize).max(2)).collect();
        let mut assigned: usize = counts.iter().sum();
        let mut k = 0;
        while assigned != regular {
            let i = k % counts.len();
            if assigned > regular && counts[i] > 2 {
                counts[i] -= 1;
                assigned -= 1;
            } else if assigned < regular {
                counts[i] += 1;
                assigned += 1;
            }
            k += 1;
        }
        let mut seq = vec![0usize; self.nodes.len()];
        let mut shared_platforms: Vec<String> = Vec::new();
        let mut waves: Vec<usize> = Vec::with_capacity(self.systems);
        for (t, (name, display, level, region, home)) in tenants.iter().enumerate() {
            input.tenants.push(Tenant {
                name: name.clone(),
                display_name: display.clone(),
                level: *level,
                region_code: region.clone(),
                home_node: self.nodes[*home].clone(),
                quota: Quota::default(),
                security_level: 3,
            });
            let first = input.systems.len();
            let platforms = (counts[t] / 10).max(1);
            let home_code = if *home == 0 { province_code.clone() } else { spec.cities[home - 1].code.clone() };
            for j in 0..counts[t] {
                seq[*home] += 1;
                let id = format!("{}-{home_code}-{:04}", spec.abbr, seq[*home]);
                let platform = j < platforms;
                let wave = if j == 0 {
                    PILOT
                } else if platform {
                    INTERNAL
                } else {
                    [SERVICES, INTERNAL, CORE][rng.weighted(&[0.18, 0.67, 0.15])]
                };
                let wave_order = WAVES[wave].0;
                let security_level = [1, 2, 3][rng.weighted(&[0.10, 0.75, 0.15])];
                let architecture =
                    [ArchitectureRequirement::Any, ArchitectureRequirement::X86_64, ArchitectureRequirement::Aarch64]
                        [rng.weighted(&[0.70, 0.22, 0.08])];
                let cores = rng.log_normal(4.0, 0.8).clamp(0.5, 96.0);
                let cpu = ((cores * 4.0).round() as u64).max(2) * 250;
                let per_core = [2, 4, 8][rng.weighted(&[0.3, 0.5, 0.2])];
                let memory = (cpu * per_core).div_ceil(1000).max(1) * GI;
                let storage = (rng.log_normal(120.0, 0.8).clamp(20.0, 2048.0) as u64) * GI;
                let data_volume = (storage as f64 * rng.uniform(0.15, 0.6)) as u64;
                let gpu = if rng.chance(0.01) { 1 + rng.below(2) as u64 } else { 0 };
                let mut depends_on = Vec::new();
                if platform && j > 0 {
                    depends_on.push(input.systems[first].system_id.clone());
                } else if !platform {
                    let edges = rng.weighted(&[0.08, 0.22, 0.35, 0.35]);
                    for _ in 0..edges {
                        let roll = rng.unit();
                        let dep = if roll < 0.15 && *home != 0 && !shared_platforms.is_empty() {
                            shared_platforms[rng.below(shared_platforms.len())].clone()
                        } else {
                            let k = first + if roll < 0.85 { rng.below(platforms) } else { rng.below(j) };
                            // Platforms come first; other systems only from earlier waves.
                            let earlier = WAVES[waves[k - self.first_system]].0;
                            if earlier > wave_order || (k >= first + platforms && earlier == wave_order) {
                                continue;
                            }
                            input.systems[k].system_id.clone()
                        };
                        if !depends_on.contains(&dep) {
                            depends_on.push(dep);
                        }
                    }
                }
                let needs_spill = security_level > levels[*home]
                    || (architecture == ArchitectureRequirement::Aarch64 && !aarch64[*home])
                    || gpu > 0;
                let mut system = System {
                    system_id: id.clone(),
                    name: id.to_lowercase(),
                    tenant: name.clone(),
                    display_name: format!("{display}{}", SYSTEM_KINDS[rng.below(SYSTEM_KINDS.len())]),
                    security_level,
                    architecture,
                    resources: Resources { cpu, memory, storage, gpu },
                    data_volume,
                    depends_on,
                    placement: Placement {
                        allow_spillover: *home != 0 && rng.chance(if needs_spill { 0.9 } else { 0.6 }),
                        ..Placement::default()
                    },
                    priority: if platform { 900 } else { [900, 700, 500, 300][rng.weighted(&[0.05, 0.15, 0.5, 0.3])] },
                    strategy: if platform {
                        Strategy::Rehost
                    } else {
                        [Strategy::Rehost, Strategy::Replatform, Strategy::Refactor, Strategy::Retire, Strategy::Retain]
                            [rng.weighted(&[0.55, 0.25, 0.12, 0.05, 0.03])]
                    },
                    wave: Some(self.wave(wave)),
                    ..System::default()
                };
                let same_wave = input.systems.last().is_some_and(|x| x.wave == system.wave);
                if !platform && j > platforms && same_wave && rng.chance(0.03) {
                    // An application and its database: same node, same wave.
                    let previous = &input.systems[input.systems.len() - 1];
                    system.same_node_as.push(previous.system_id.clone());
                    system.architecture = previous.architecture;
                    system.depends_on.retain(|d| *d != previous.system_id);
                } else if !platform && *home != 0 && j > platforms && rng.chance(0.01) {
                    // A primary/standby pair: never on one node; the standby may spill over.
                    let previous = &input.systems[input.systems.len() - 1];
                    system.anti_affinity_with.push(previous.system_id.clone());
                    system.placement.allow_spillover = true;
                }
                if *home == 0 && j == 0 {
                    shared_platforms.push(id);
                }
                waves.push(wave);
                input.systems.push(system);
            }
        }
    }

    fn size_nodes_and_quotas(&self, input: &mut PlanInput, rng: &mut Rng) {
        let node0 = input.nodes.len() - self.nodes.len();
        let index = |name: &str| self.nodes.iter().position(|n| n == name).unwrap_or(0);
        let mut demand = vec![Resources::default(); self.nodes.len()];
        // Migration work per node (hours at 1 Gbps per slot) and pilot systems per node.
        let mut work = vec![0f64; self.nodes.len()];
        let mut pilots = vec![0u64; self.nodes.len()];
        let mut tenant_demand = vec![(Resources::default(), 0u64); input.tenants.len() - self.first_tenant];
        let tenant_index: std::collections::HashMap<&str, usize> =
            input.tenants[self.first_tenant..].iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
        let tenant_of = |name: &str| tenant_index.get(name).copied().unwrap_or(0);
        for s in &input.systems[self.first_system..] {
            if !s.strategy.migrates() {
                continue;
            }
            let t = tenant_of(&s.tenant);
            let tenant = &input.tenants[self.first_tenant + t];
            let mut home = index(&tenant.home_node);
            let node = &input.nodes[node0 + home];
            let arch_ok = s.architecture != ArchitectureRequirement::Aarch64
                || node.architectures.contains(&Architecture::Aarch64);
            if home != 0
                && s.placement.allow_spillover
                && (s.security_level > node.security_level || !arch_ok || s.resources.gpu > 0)
            {
                home = 0;
            }
            demand[home] = demand[home].plus(s.resources);
            work[home] += 2.0 + s.data_volume as f64 * 8.0 / 1e9 / 3600.0;
            if s.wave.as_deref().is_some_and(|w| w.ends_with(WAVES[PILOT].1)) {
                pilots[home] += 1;
            }
            tenant_demand[t].0 = tenant_demand[t].0.plus(s.resources);
            tenant_demand[t].1 += 1;
        }
        let small: Vec<usize> = {
            let mut by: Vec<usize> = (1..self.nodes.len()).collect();
            by.sort_by(|a, b| self.spec.cities[a - 1].weight.total_cmp(&self.spec.cities[b - 1].weight));
            by.into_iter().take(2).collect()
        };
        for (k, d) in demand.iter().enumerate() {
            let factor = if small.contains(&k) { 1.03 } else { 1.3 };
            let up = |x: u64, unit: u64| ((x as f64 * factor) as u64).div_ceil(unit) * unit;
            let node = &mut input.nodes[node0 + k];
            node.allocatable = Resources {
                cpu: up(d.cpu, 16_000),
                memory: up(d.memory, 64 * GI),
                storage: up(d.storage, 10 * TI),
                gpu: if d.gpu > 0 { up(d.gpu, 8) } else { 0 },
            };
            // About 36 hours of work per slot, the pilot wave in one round; slack on small nodes.
            let slack = if small.contains(&k) { 1.25 } else { 1.0 };
            let slots = ((work[k] * slack / 36.0).ceil() as u64).max(pilots[k] + 2).max(4) as u32;
            node.max_concurrent_migrations = slots;
            node.migration_bandwidth_mbps = u64::from(slots) * 1000;
        }
        for (t, (need, count)) in tenant_demand.iter().enumerate() {
            let headroom = if t == 11 { 0.8 } else { rng.uniform(1.25, 1.6) };
            let up = |x: u64, unit: u64| ((x as f64 * headroom) as u64).div_ceil(unit).max(1) * unit;
            input.tenants[self.first_tenant + t].quota = Quota {
                cpu: up(need.cpu, 1000),
                memory: up(need.memory, GI),
                storage: up(need.storage, GI),
                max_systems: count + 2 + count / 5,
            };
        }
    }
}
