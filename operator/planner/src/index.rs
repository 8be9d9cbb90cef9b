//! Canonical, index-based view of a [`PlanInput`]: sorted, de-duplicated, every string id
//! resolved once to a dense integer index so that the later steps work on plain vectors.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::{
    ArchitectureRequirement, CityBudget, Classification, Node, PlanInput, Resources, Settings, System, Tenant, Tier,
    Wave,
};
use crate::residency::Rules;

/// Marks "no index".
pub const NONE: u32 = u32::MAX;

/// FxHash: a fast, deterministic hasher for short string keys (no HashDoS concern here:
/// iteration order is never observed, only lookups).
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by borrowed ids.
pub type FastMap<'a> = HashMap<&'a str, u32, BuildHasherDefault<FxHasher>>;

/// Compressed adjacency lists: the neighbours of `i` are `targets[offsets[i]..offsets[i+1]]`.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Csr {
    /// Builds from per-row lists produced by `row(i)` for `i in 0..rows`; rows are sorted and
    /// de-duplicated.
    fn build(rows: usize, mut row: impl FnMut(usize, &mut Vec<u32>)) -> Csr {
        let mut offsets = Vec::with_capacity(rows + 1);
        let mut targets = Vec::new();
        offsets.push(0);
        let mut scratch = Vec::new();
        for i in 0..rows {
            scratch.clear();
            row(i, &mut scratch);
            scratch.sort_unstable();
            scratch.dedup();
            targets.extend_from_slice(&scratch);
            offsets.push(targets.len() as u32);
        }
        Csr { offsets, targets }
    }

    /// Builds the reverse (transposed) adjacency.
    fn transpose(&self, rows: usize) -> Csr {
        let mut counts = vec![0u32; rows + 1];
        for &t in &self.targets {
            counts[t as usize + 1] += 1;
        }
        for i in 0..rows {
            counts[i + 1] += counts[i];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut targets = vec![0u32; self.targets.len()];
        for i in 0..rows {
            for &t in self.row(i) {
                targets[fill[t as usize] as usize] = i as u32;
                fill[t as usize] += 1;
            }
        }
        Csr { offsets, targets }
    }

    /// The neighbours of row `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// What the planner does with a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Retire or Retain: never placed.
    NotMigrated,
    /// Completed on its node: accounted, not scheduled.
    Completed,
    /// Started on its node: accounted, scheduled from now for its remaining phases.
    InFlight,
    /// To be placed and scheduled by this plan.
    New,
}

/// The fields of a system the hot loops read, copied out of the (large, scattered) input
/// structs once.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// `resources`.
    pub resources: Resources,
    /// `dataVolume`.
    pub data_volume: u64,
    /// `priority`.
    pub priority: u32,
    /// `securityLevel`.
    pub security_level: u8,
    /// `architecture`.
    pub architecture: ArchitectureRequirement,
    /// `placement.allowSpillover`.
    pub allow_spillover: bool,
    /// `classification`.
    pub classification: Classification,
    /// A residency waiver is recorded: the residency rules do not restrict it.
    pub waived: bool,
}

/// The canonical, indexed problem.
#[derive(Debug)]
pub struct Problem<'a> {
    /// Settings of the input.
    pub settings: &'a Settings,
    /// Nodes sorted by name, de-duplicated.
    pub nodes: Vec<&'a Node>,
    /// Tenants sorted by name, de-duplicated.
    pub tenants: Vec<&'a Tenant>,
    /// Systems sorted by systemId, de-duplicated.
    pub systems: Vec<&'a System>,
    /// Waves sorted by name, de-duplicated.
    pub waves: Vec<&'a Wave>,
    /// Systems dropped because an earlier one (canonical order) has the same systemId.
    pub duplicates: Vec<&'a System>,
    /// Problems in the input that block nothing by themselves.
    pub warnings: Vec<String>,
    /// Per node: index of the provincial node it spills over to, or [`NONE`].
    pub spill_target: Vec<u32>,
    /// Per tenant: index of its home node, or [`NONE`].
    pub tenant_home: Vec<u32>,
    /// Per system: tenant index or [`NONE`].
    pub tenant_of: Vec<u32>,
    /// Per system: wave index, or [`NONE`] for no wave (see `unknown_wave`).
    pub wave_of: Vec<u32>,
    /// Per system: it names a wave that does not exist.
    pub unknown_wave: Vec<bool>,
    /// Per system: what the plan does with it.
    pub kind: Vec<Kind>,
    /// Per system: the fields the hot loops read.
    pub facts: Vec<Facts>,
    /// Per system: the node it is on (pinned kinds) or was last planned on (new), or [`NONE`].
    pub current_node: Vec<u32>,
    /// Per system: it is pinned to a node name that does not exist.
    pub unknown_node: Vec<bool>,
    /// Per system: explicitly preferred node index, or [`NONE`].
    pub preferred: Vec<u32>,
    /// Per system: allowed node indices (empty = no restriction; see `allowed_unknown`).
    pub allowed: Csr,
    /// Per system: its allowedNodes list is not empty but names no existing node.
    pub allowed_unknown: Vec<bool>,
    /// Known dependencies (system indices).
    pub deps: Csr,
    /// Reverse of `deps`.
    pub dependents: Csr,
    /// Dependencies that name no system: (system index, ids), sorted by index.
    pub unknown_deps: Vec<(u32, Vec<&'a str>)>,
    /// `sameNodeAs`, made symmetric, known ids only.
    pub same_node: Csr,
    /// `sameNodeAs` ids that name no system: (system index, ids).
    pub unknown_same_node: Vec<(u32, Vec<&'a str>)>,
    /// `antiAffinityWith`, made symmetric, known ids only.
    pub anti_affinity: Csr,
    /// City budgets sorted by name, one per region code (the first by name is kept).
    pub budgets: Vec<&'a CityBudget>,
    /// Per budget: (node index, limit) for each known node it lists, by node index.
    pub budget_nodes: Vec<Vec<(u32, Resources)>>,
    /// Per tenant: index of its city's budget, or [`NONE`].
    pub tenant_budget: Vec<u32>,
    /// Per tenant: how much of its quota it may lend (zero outside a budget).
    pub tenant_lend: Vec<Resources>,
    /// Per tenant: how much it may borrow on top of its quota (zero outside a budget).
    pub tenant_borrow: Vec<Resources>,
    /// Per tenant: the region code residency rules measure from (its own, else its home
    /// node's).
    pub tenant_region: Vec<&'a str>,
    /// The residency rules in force, by classification.
    pub residency: Rules<'a>,
}

fn dedup_sorted<'a, T: Ord>(
    mut items: Vec<&'a T>,
    key: impl Fn(&T) -> &str,
    what: &str,
    warnings: &mut Vec<String>,
) -> Vec<&'a T> {
    items.sort_unstable();
    let before = items.len();
    items.dedup_by(|later, kept| key(later) == key(kept));
    if items.len() != before {
        warnings.push(format!(
            "{} duplicate {what} name(s) ignored (the first in canonical order is kept)",
            before - items.len()
        ));
    }
    items
}

fn map_of<'a, T>(items: &[&'a T], key: impl Fn(&'a T) -> &'a str) -> FastMap<'a> {
    let mut map = FastMap::with_capacity_and_hasher(items.len(), Default::default());
    for (i, item) in items.iter().enumerate() {
        map.insert(key(item), i as u32);
    }
    map
}

impl<'a> Problem<'a> {
    /// Sorts, de-duplicates and indexes `input`.
    pub fn new(input: &'a PlanInput) -> Problem<'a> {
        let mut warnings = Vec::new();
        let nodes = dedup_sorted(input.nodes.iter().collect(), |n| &n.name, "node", &mut warnings);
        let tenants = dedup_sorted(input.tenants.iter().collect(), |t| &t.name, "tenant", &mut warnings);
        let waves = dedup_sorted(input.waves.iter().collect(), |w| &w.name, "wave", &mut warnings);

        // By systemId, then content, then input position: the first 16 bytes of the id as one
        // integer decide most comparisons.
        let mut keyed: Vec<(u128, u32)> =
            input.systems.iter().enumerate().map(|(i, s)| (id_prefix(&s.system_id), i as u32)).collect();
        // Stable: fast on input made of sorted runs.
        keyed.sort_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                let (x, y) = (&input.systems[a.1 as usize], &input.systems[b.1 as usize]);
                x.system_id.cmp(&y.system_id).then_with(|| x.cmp(y))
            })
        });
        let all = keyed.iter().map(|(_, i)| &input.systems[*i as usize]);
        let mut systems = Vec::with_capacity(input.systems.len());
        let mut duplicates = Vec::new();
        for s in all {
            match systems.last() {
                Some(last) if <&System>::clone(last).system_id == s.system_id => duplicates.push(s),
                _ => systems.push(s),
            }
        }

        let node_by_name = map_of(&nodes, |n| n.name.as_str());
        let tenant_by_name = map_of(&tenants, |t| t.name.as_str());
        let wave_by_name = map_of(&waves, |w| w.name.as_str());
        let system_by_id = map_of(&systems, |s| s.system_id.as_str());
        let node = |name: &str| node_by_name.get(name).copied().unwrap_or(NONE);

        let spill_target = nodes.iter().map(|n| spill_target_of(n, &nodes, &node_by_name)).collect();
        let tenant_home: Vec<u32> = tenants.iter().map(|t| node(&t.home_node)).collect();
        for (t, home) in tenants.iter().zip(&tenant_home) {
            if *home == NONE {
                warnings.push(format!("tenant {} names home node {}, which does not exist", t.name, t.home_node));
            }
        }

        let n = systems.len();
        let mut tenant_of = Vec::with_capacity(n);
        let mut wave_of = Vec::with_capacity(n);
        let mut unknown_wave = Vec::with_capacity(n);
        let mut kind = Vec::with_capacity(n);
        let mut current_node = Vec::with_capacity(n);
        let mut unknown_node = Vec::with_capacity(n);
        let mut preferred = Vec::with_capacity(n);
        let mut allowed_unknown = Vec::with_capacity(n);
        let mut facts = Vec::with_capacity(n);
        // Neighbouring systems mostly share a tenant: look a name up only when it changes.
        let mut last_tenant: Option<(&str, u32)> = None;
        for s in &systems {
            facts.push(Facts {
                resources: s.resources,
                data_volume: s.data_volume,
                priority: s.priority,
                security_level: s.security_level,
                architecture: s.architecture,
                allow_spillover: s.placement.allow_spillover,
                classification: s.classification,
                waived: s.residency_waiver.is_some(),
            });
            let tenant = match last_tenant {
                Some((name, t)) if name == s.tenant => t,
                _ => tenant_by_name.get(s.tenant.as_str()).copied().unwrap_or(NONE),
            };
            last_tenant = Some((s.tenant.as_str(), tenant));
            tenant_of.push(tenant);
            let w = s.wave.as_deref().map(|w| wave_by_name.get(w).copied().unwrap_or(NONE));
            wave_of.push(w.unwrap_or(NONE));
            unknown_wave.push(w == Some(NONE));
            let at = s.node.as_deref().map(node).unwrap_or(NONE);
            let k = if !s.strategy.migrates() {
                Kind::NotMigrated
            } else if s.phase.is_pinned() && s.node.is_some() {
                if s.phase == crate::model::Phase::Completed { Kind::Completed } else { Kind::InFlight }
            } else {
                if s.phase.is_pinned() {
                    warnings.push(format!(
                        "system {} is {:?} but names no node; it is planned afresh",
                        s.system_id, s.phase
                    ));
                }
                Kind::New
            };
            unknown_node.push(matches!(k, Kind::Completed | Kind::InFlight) && at == NONE);
            kind.push(k);
            current_node.push(at);
            preferred.push(s.placement.preferred_node.as_deref().map(node).unwrap_or(NONE));
            allowed_unknown.push(
                !s.placement.allowed_nodes.is_empty() && s.placement.allowed_nodes.iter().all(|a| node(a) == NONE),
            );
        }
        let allowed = Csr::build(n, |i, out| {
            out.extend(systems[i].placement.allowed_nodes.iter().map(|a| node(a)));
            out.retain(|x| *x != NONE);
        });

        let mut unknown_deps = Vec::new();
        let deps = resolve(&systems, &system_by_id, |s| &s.depends_on, &mut unknown_deps);
        let dependents = deps.transpose(n);
        let mut unknown_same_node = Vec::new();
        let same = resolve(&systems, &system_by_id, |s| &s.same_node_as, &mut unknown_same_node);
        let same_node = symmetric(&same, n);
        let mut ignored = Vec::new();
        let anti = resolve(&systems, &system_by_id, |s| &s.anti_affinity_with, &mut ignored);
        let anti_affinity = symmetric(&anti, n);

        let budgets = city_budgets(input, &mut warnings);
        let budget_nodes = budgets
            .iter()
            .map(|b| {
                let mut list: Vec<(u32, Resources)> = Vec::with_capacity(b.nodes.len());
                for share in &b.nodes {
                    match node(&share.node) {
                        NONE => warnings
                            .push(format!("city budget {} lists node {}, which does not exist", b.name, share.node)),
                        n if list.iter().any(|(m, _)| *m == n) => {}
                        n => list.push((n, share.limit.resources())),
                    }
                }
                list.sort_unstable();
                list
            })
            .collect();
        let tenant_budget: Vec<u32> = tenants.iter().map(|t| budget_of(t, &budgets)).collect();
        let (mut tenant_lend, mut tenant_borrow) = (Vec::new(), Vec::new());
        for (t, b) in tenants.iter().zip(&tenant_budget) {
            let (lend, borrow) = match budgets.get(*b as usize) {
                Some(b) => {
                    let own = b.lending.departments.iter().find(|d| d.tenant == t.name);
                    let lend = own.and_then(|d| d.lend_percent).unwrap_or(b.lending.lend_percent);
                    let borrow = own.and_then(|d| d.borrow_percent).unwrap_or(b.lending.borrow_percent);
                    (percent_of_quota(t, lend), percent_of_quota(t, borrow))
                }
                None => (Resources::default(), Resources::default()),
            };
            tenant_lend.push(lend);
            tenant_borrow.push(borrow);
        }
        let tenant_region = tenants
            .iter()
            .zip(&tenant_home)
            .map(|(t, home)| {
                if t.region_code.len() >= 4 || *home == NONE {
                    t.region_code.as_str()
                } else {
                    nodes[*home as usize].region_code.as_str()
                }
            })
            .collect();
        let residency = Rules::new(&input.residency);

        Problem {
            settings: &input.settings,
            nodes,
            tenants,
            systems,
            waves,
            duplicates,
            warnings,
            spill_target,
            tenant_home,
            tenant_of,
            wave_of,
            unknown_wave,
            kind,
            facts,
            current_node,
            unknown_node,
            preferred,
            allowed,
            allowed_unknown,
            deps,
            dependents,
            unknown_deps,
            same_node,
            unknown_same_node,
            anti_affinity,
            budgets,
            budget_nodes,
            tenant_budget,
            tenant_lend,
            tenant_borrow,
            tenant_region,
            residency,
        }
    }

    /// `"320500 苏州市"`: how explanations name a node.
    pub fn node_label(&self, node: u32) -> String {
        let n = self.nodes[node as usize];
        if n.display_name.is_empty() {
            format!("{} ({})", n.region_code, n.name)
        } else {
            format!("{} {}", n.region_code, n.display_name)
        }
    }
}

/// The first 16 bytes of `id`, zero-padded, as a big-endian integer: ordered like the ids
/// wherever the ids differ within their first 16 bytes.
fn id_prefix(id: &str) -> u128 {
    let bytes = id.as_bytes();
    let mut buf = [0u8; 16];
    let k = bytes.len().min(16);
    buf[..k].copy_from_slice(&bytes[..k]);
    u128::from_be_bytes(buf)
}

/// Resolves one id list per system to indices; unresolved ids go to `unknown`.
fn resolve<'a>(
    systems: &[&'a System],
    by_id: &FastMap<'a>,
    list: impl Fn(&'a System) -> &'a Vec<String>,
    unknown: &mut Vec<(u32, Vec<&'a str>)>,
) -> Csr {
    Csr::build(systems.len(), |i, out| {
        let mut missing = Vec::new();
        for id in list(systems[i]) {
            match by_id.get(id.as_str()) {
                Some(&j) => out.push(j),
                _ => missing.push(id.as_str()),
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            unknown.push((i as u32, missing));
        }
    })
}

/// The union of `csr` and its transpose, without self-loops.
fn symmetric(csr: &Csr, rows: usize) -> Csr {
    let reverse = csr.transpose(rows);
    Csr::build(rows, |i, out| {
        out.extend_from_slice(csr.row(i));
        out.extend_from_slice(reverse.row(i));
        out.retain(|j| *j as usize != i);
    })
}

fn spill_target_of(node: &Node, nodes: &[&Node], by_name: &FastMap<'_>) -> u32 {
    if node.tier == Tier::Provincial {
        return NONE;
    }
    if let Some(parent) = node.parent.as_deref().and_then(|p| by_name.get(p)) {
        return *parent;
    }
    let provincial: Vec<u32> =
        (0..nodes.len() as u32).filter(|i| nodes[*i as usize].tier == Tier::Provincial).collect();
    let prefix = node.region_code.get(..2);
    provincial
        .iter()
        .copied()
        .find(|i| prefix.is_some() && nodes[*i as usize].region_code.get(..2) == prefix)
        .or(if provincial.len() == 1 { Some(provincial[0]) } else { None })
        .unwrap_or(NONE)
}

/// The budgets sorted by name; of several for one region code, the first by name is kept.
fn city_budgets<'a>(input: &'a PlanInput, warnings: &mut Vec<String>) -> Vec<&'a CityBudget> {
    let mut budgets = dedup_sorted(input.budgets.iter().collect(), |b| &b.name, "city budget", warnings);
    let mut seen: Vec<&str> = Vec::new();
    budgets.retain(|b| {
        if seen.contains(&b.region_code.as_str()) {
            warnings.push(format!(
                "city budget {} is ignored: another budget (first by name) already covers region {}",
                b.name, b.region_code
            ));
            false
        } else {
            seen.push(&b.region_code);
            true
        }
    });
    budgets
}

/// The budget whose departments include `t` ([`CityBudget::covers`]).
fn budget_of(t: &Tenant, budgets: &[&CityBudget]) -> u32 {
    let found = budgets.iter().position(|b| CityBudget::covers(&b.region_code, t.level, &t.region_code));
    found.map_or(NONE, |k| k as u32)
}

/// `percent` % of a tenant's cpu, memory and storage quota, rounded down.
fn percent_of_quota(t: &Tenant, percent: u32) -> Resources {
    let part = |q: u64| (u128::from(q) * u128::from(percent.min(100)) / 100) as u64;
    Resources { cpu: part(t.quota.cpu), memory: part(t.quota.memory), storage: part(t.quota.storage), gpu: 0 }
}
