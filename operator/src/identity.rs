//! Who a system is: a `systemId` is a province-wide identity, owned by one GovSystem, and what a
//! system's spec says about other systems may not reach into another city.
//!
//! Tenants' owners may create GovSystems in their own Namespace, so a hostile or careless
//! tenant can name another city's `systemId`, or tie another city's system to its own through
//! a placement constraint. Admission cannot see other objects, so these rules are enforced
//! here, before anything is planned, published or approved:
//!
//! * **First come, first owned.** Among GovSystems with the same `systemId`, the one created
//!   first (then by Namespace and name, for equal timestamps) owns it. Creation timestamps
//!   never change, so a later duplicate can never take the id: it is left out of planning,
//!   never published to the status store, never journaled, never approved, and it is
//!   `Blocked` with the reason `DuplicateSystemId` and a message naming the owner.
//! * **Placement constraints stay in the jurisdiction.** `sameNodeAs` and `antiAffinityWith`
//!   bind both systems (the planner makes them symmetric), so a constraint naming a system
//!   outside the referencing tenant's jurisdiction (its city; the whole province for a
//!   provincial tenant) is dropped from the plan, and a system that has not started yet is
//!   `Blocked` with `ForeignPlacementReference` naming the field. `dependsOn` binds only the
//!   dependent system and may cross cities (city systems depend on provincial platforms).

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;
use suyun_crds::v1alpha1::{GovSystem, Phase};

/// Reason of a duplicate's Blocked condition.
pub const DUPLICATE_SYSTEM_ID: &str = "DuplicateSystemId";
/// Reason of the Blocked condition of a system naming a foreign system in a placement rule.
pub const FOREIGN_PLACEMENT_REFERENCE: &str = "ForeignPlacementReference";

/// Whether a tenant of region `tenant_region` may bind a system of region `region` to its own:
/// the same city (first four digits of the GB/T 2260 code), or anything in the province for a
/// provincial tenant (`xx0000`). Codes that are not six ASCII digits bind nothing.
pub fn within_jurisdiction(tenant_region: &str, region: &str) -> bool {
    let digits = |c: &str| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit());
    if !digits(tenant_region) || !digits(region) {
        return false;
    }
    let prefix = if tenant_region.ends_with("0000") { 2 } else { 4 };
    tenant_region.as_bytes()[..prefix] == region.as_bytes()[..prefix]
}

/// Why a system is left out of planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// PascalCase reason.
    pub reason: &'static str,
    /// Sentence naming the field and what to do.
    pub message: String,
}

/// The outcome of screening every GovSystem.
#[derive(Clone, Debug, Default)]
pub struct Screening {
    /// The owner of each `systemId`: an index into the screened systems.
    pub owner: HashMap<String, usize>,
    /// Systems that may not be planned, and why (duplicates; unstarted systems with foreign
    /// placement references).
    pub refused: HashMap<usize, Refusal>,
    /// Per system, the `sameNodeAs` / `antiAffinityWith` entries to drop from its plan input.
    pub foreign: HashMap<usize, Vec<String>>,
}

impl Screening {
    /// Whether system `i` owns its `systemId`.
    pub fn owns(&self, i: usize, system: &GovSystem) -> bool {
        self.owner.get(&system.spec.system_id) == Some(&i)
    }
}

/// The owner of each `systemId` among `systems`: the first created, then by Namespace and name.
pub fn owners(systems: &[Arc<GovSystem>]) -> HashMap<String, usize> {
    // A missing timestamp (an object not yet stored) ranks last.
    let rank = |s: &GovSystem| {
        let created = s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created.is_none(), created, s.namespace(), s.name_any())
    };
    let mut owner: HashMap<String, usize> = HashMap::with_capacity(systems.len());
    for (i, s) in systems.iter().enumerate() {
        owner
            .entry(s.spec.system_id.clone())
            .and_modify(|o| {
                if rank(s) < rank(&systems[*o]) {
                    *o = i;
                }
            })
            .or_insert(i);
    }
    owner
}

/// Screens `systems` (`statuses[i]` the effective status of `systems[i]`): who owns each id,
/// who may not be planned, and which placement references reach outside a jurisdiction.
/// `regions` maps a Namespace (tenant) to its region code.
pub fn screen(
    systems: &[Arc<GovSystem>],
    phases: impl Fn(usize) -> Phase,
    regions: &HashMap<String, String>,
) -> Screening {
    let owner = owners(systems);
    let region_of = |s: &GovSystem| regions.get(&s.namespace().unwrap_or_default()).map(String::as_str);
    let mut refused = HashMap::new();
    let mut foreign: HashMap<usize, Vec<String>> = HashMap::new();
    for (i, s) in systems.iter().enumerate() {
        let o = owner[&s.spec.system_id];
        if o != i {
            let first = &systems[o];
            refused.insert(
                i,
                Refusal {
                    reason: DUPLICATE_SYSTEM_ID,
                    message: format!(
                        "spec.systemId: {} is already the id of GovSystem {}/{}, created earlier; this object is \
                         ignored until it is given a systemId of its own",
                        s.spec.system_id,
                        first.namespace().unwrap_or_default(),
                        first.name_any()
                    ),
                },
            );
            continue;
        }
        let Some(home) = region_of(s) else { continue };
        let fields = [("spec.sameNodeAs", &s.spec.same_node_as), ("spec.antiAffinityWith", &s.spec.anti_affinity_with)];
        let mut first_problem = None;
        for (field, ids) in fields {
            for (k, id) in ids.iter().enumerate() {
                let Some(&t) = owner.get(id) else { continue };
                let theirs = region_of(&systems[t]).unwrap_or_default();
                if !within_jurisdiction(home, theirs) {
                    foreign.entry(i).or_default().push(id.clone());
                    first_problem.get_or_insert_with(|| {
                        format!(
                            "{field}[{k}]: {id} belongs to another jurisdiction; placement rules may name only \
                             systems of your own city (of the province for a provincial tenant)"
                        )
                    });
                }
            }
        }
        if let Some(message) = first_problem
            && matches!(phases(i), Phase::Pending | Phase::Scheduled | Phase::Blocked)
        {
            refused.insert(i, Refusal { reason: FOREIGN_PLACEMENT_REFERENCE, message });
        }
    }
    Screening { owner, refused, foreign }
}

/// The systems the planner may see: owners only, without foreign placement references, and
/// without the refused ones; each with its index in `systems`.
pub fn plannable(systems: &[Arc<GovSystem>], screening: &Screening) -> Vec<(usize, Arc<GovSystem>)> {
    systems
        .iter()
        .enumerate()
        .filter(|(i, _)| !screening.refused.contains_key(i) && screening.owns(*i, &systems[*i]))
        .map(|(i, s)| match screening.foreign.get(&i) {
            None => (i, s.clone()),
            Some(drop) => {
                let mut s = GovSystem::clone(s);
                s.spec.same_node_as.retain(|id| !drop.contains(id));
                s.spec.anti_affinity_with.retain(|id| !drop.contains(id));
                (i, Arc::new(s))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn system(ns: &str, name: &str, id: &str, created: i64, same: &[&str]) -> Arc<GovSystem> {
        let spec = serde_json::from_value(serde_json::json!({
            "systemId": id, "displayName": "x", "classification": "Internal", "securityLevel": 2,
            "resources": {"cpu": "1", "memory": "1Gi", "storage": "1Gi"}, "sameNodeAs": same
        }))
        .unwrap();
        let mut s = GovSystem::new(name, spec);
        s.metadata.namespace = Some(ns.into());
        s.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
        Arc::new(s)
    }

    fn regions() -> HashMap<String, String> {
        [("suzhou", "320500"), ("kunshan", "320583"), ("nanjing", "320100"), ("province", "320000")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect()
    }

    #[test]
    fn jurisdictions() {
        assert!(within_jurisdiction("320500", "320583"));
        assert!(within_jurisdiction("320583", "320500"), "a county and its city");
        assert!(!within_jurisdiction("320100", "320500"));
        assert!(within_jurisdiction("320000", "320500"), "the province binds its cities");
        assert!(!within_jurisdiction("320500", "320000"), "a city does not bind the province");
        assert!(!within_jurisdiction("320000", "330100"), "nor another province");
        assert!(!within_jurisdiction("32é500", "320500"), "malformed codes bind nothing (and do not panic)");
        assert!(!within_jurisdiction("", ""));
    }

    #[test]
    fn the_first_created_owns_an_id_whatever_the_order_of_the_cache() {
        let original = system("suzhou", "a", "JS-320500-0001", 100, &[]);
        let hijack = system("nanjing", "b", "JS-320500-0001", 200, &[]);
        for systems in [vec![original.clone(), hijack.clone()], vec![hijack.clone(), original.clone()]] {
            let s = screen(&systems, |_| Phase::Pending, &regions());
            let o = s.owner["JS-320500-0001"];
            assert_eq!(systems[o].namespace().as_deref(), Some("suzhou"));
            let dup = 1 - o;
            let refusal = &s.refused[&dup];
            assert_eq!(refusal.reason, DUPLICATE_SYSTEM_ID);
            assert!(refusal.message.contains("suzhou/a"), "{}", refusal.message);
            assert!(!s.refused.contains_key(&o), "the owner is untouched");
            let planned = plannable(&systems, &s);
            assert_eq!(planned.len(), 1);
            assert_eq!(planned[0].1.namespace().as_deref(), Some("suzhou"));
            assert_eq!(planned[0].0, o, "with its index");
        }
        // Equal timestamps: Namespace, then name decide, the same way every time.
        let (x, y) = (system("b-ns", "x", "JS-320500-0002", 5, &[]), system("a-ns", "y", "JS-320500-0002", 5, &[]));
        assert_eq!(owners(&[x.clone(), y.clone()])["JS-320500-0002"], 1);
        assert_eq!(owners(&[y, x])["JS-320500-0002"], 0);
    }

    #[test]
    fn placement_rules_may_not_reach_into_another_city() {
        let suzhou = system("suzhou", "a", "JS-320500-0001", 1, &[]);
        let kunshan = system("kunshan", "k", "JS-320500-0002", 1, &["JS-320500-0001"]);
        let nanjing = system("nanjing", "n", "JS-320100-0001", 1, &["JS-320500-0001"]);
        let province = system("province", "p", "JS-320000-0001", 1, &["JS-320500-0001"]);
        let systems = vec![suzhou, kunshan, nanjing, province];
        let s = screen(&systems, |_| Phase::Pending, &regions());
        assert!(!s.refused.contains_key(&1), "the same city may co-locate");
        assert!(!s.refused.contains_key(&3), "the province may co-locate");
        let refusal = &s.refused[&2];
        assert_eq!(refusal.reason, FOREIGN_PLACEMENT_REFERENCE);
        assert!(refusal.message.starts_with("spec.sameNodeAs[0]: JS-320500-0001"), "{}", refusal.message);
        let planned = plannable(&systems, &s);
        assert_eq!(planned.len(), 3, "the foreign-referencing system is not planned");
        // Once started, the system keeps going but the reference never reaches the planner.
        let s = screen(&systems, |_| Phase::Replicating, &regions());
        assert!(s.refused.is_empty());
        let planned = plannable(&systems, &s);
        let (_, n) = planned.iter().find(|(_, p)| p.name_any() == "n").unwrap();
        assert!(n.spec.same_node_as.is_empty());
    }
}
