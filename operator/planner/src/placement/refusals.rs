//! The sentences that explain why a unit could not be placed, with the numbers.

use super::{Placement, Placer, Stage};
use crate::dependencies::Failure;
use crate::explain::{self, Reason, ResourceKind};
use crate::index::NONE;
use crate::model::{Architecture, ArchitectureRequirement, Resources, TenantLevel};
use crate::residency;

impl Placer<'_, '_> {
    pub(super) fn spill_note(&self, s: usize) -> String {
        let p = self.p;
        let t = p.tenant_of[s] as usize;
        if p.tenants[t].level == TenantLevel::Provincial {
            return String::new();
        }
        if !p.systems[s].placement.allow_spillover {
            return "; spillover not allowed".to_owned();
        }
        let spill = p.spill_target[p.tenant_home[t] as usize];
        match (spill != NONE).then(|| self.residency_refusal(s, spill)).flatten() {
            Some(rule) => format!(
                "; spillover to {} is refused by residency rule {} ({} data: {})",
                p.node_label(spill),
                rule.name,
                rule.classification.as_str(),
                residency::describe(rule, p.tenant_region[t])
            ),
            None => String::new(),
        }
    }

    pub(super) fn no_candidate_message(&self, leader: usize, group: &[u32]) -> String {
        let p = self.p;
        if group.len() > 1 {
            return format!("no node is eligible for every member of its sameNodeAs group ({} systems)", group.len());
        }
        let s = p.systems[leader];
        let home = p.tenant_home[p.tenant_of[leader] as usize];
        format!(
            "allowedNodes ({}) exclude its home node {}{}",
            s.placement.allowed_nodes.join(", "),
            p.node_label(home),
            self.spill_note(leader)
        )
    }

    pub(super) fn stage_failure(
        &self,
        state: &Placement,
        stage: Stage,
        group: &[u32],
        at: &[u32],
        spill: &str,
    ) -> Failure {
        let p = self.p;
        let labels = |f: &dyn Fn(u32) -> String| at.iter().map(|n| f(*n)).collect::<Vec<_>>().join(", ");
        let (reason, message) = match stage {
            Stage::Residency => {
                let m = group
                    .iter()
                    .map(|m| *m as usize)
                    .find(|m| at.iter().any(|n| self.residency_refusal(*m, *n).is_some()))
                    .unwrap_or(group[0] as usize);
                let region = p.tenant_region[p.tenant_of[m] as usize];
                let refusals: Vec<String> = at
                    .iter()
                    .filter_map(|n| {
                        self.residency_refusal(m, *n).map(|rule| {
                            format!(
                                "{} by rule {} ({})",
                                p.node_label(*n),
                                rule.name,
                                residency::describe(rule, region)
                            )
                        })
                    })
                    .collect();
                (
                    Reason::ResidencyViolation,
                    format!(
                        "{} data of {} may not live on {}; no residency waiver is recorded",
                        p.facts[m].classification.as_str(),
                        p.systems[m].system_id,
                        refusals.join(", ")
                    ),
                )
            }
            Stage::TakesNothing => (
                Reason::NoEligibleNode,
                format!(
                    "every eligible node takes nothing new: {}{spill}",
                    labels(&|n| {
                        let node = p.nodes[n as usize];
                        let why = if node.cordoned {
                            "cordoned"
                        } else if node.unreachable {
                            "its member cluster is unreachable"
                        } else {
                            "takes no migrations"
                        };
                        format!("{} ({why})", p.node_label(n))
                    })
                ),
            ),
            Stage::Security => {
                let level = group.iter().map(|m| p.systems[*m as usize].security_level).max().unwrap_or(0);
                (
                    Reason::SecurityLevelMismatch,
                    format!(
                        "needs 等保 level {level}; {}{spill}",
                        labels(&|n| format!(
                            "{} is certified to level {}",
                            p.node_label(n),
                            p.nodes[n as usize].security_level
                        ))
                    ),
                )
            }
            Stage::Architecture => {
                let need = group
                    .iter()
                    .map(|m| p.systems[*m as usize].architecture)
                    .find(|a| *a != ArchitectureRequirement::Any)
                    .unwrap_or_default();
                let name = if need == ArchitectureRequirement::Aarch64 { "aarch64" } else { "x86_64" };
                (
                    Reason::ArchitectureMismatch,
                    format!(
                        "needs {name}; {}{spill}",
                        labels(&|n| format!(
                            "{} offers {}",
                            p.node_label(n),
                            arch_list(&p.nodes[n as usize].architectures)
                        ))
                    ),
                )
            }
            Stage::Window => (
                Reason::NoCutoverWindow,
                format!(
                    "cutover needs {}; {}{spill}",
                    explain::duration(i64::from(p.settings.cutover_minutes) * 60),
                    labels(&|n| {
                        let w = p.wave_of[group[0] as usize];
                        format!(
                            "the longest window on {} is {}",
                            p.node_label(n),
                            explain::duration(self.windows.longest(n, w))
                        )
                    })
                ),
            ),
            Stage::Machine => {
                let need = group
                    .iter()
                    .map(|m| p.facts[*m as usize].resources)
                    .max_by_key(|r| (r.cpu, r.memory, r.gpu))
                    .unwrap_or_default();
                (
                    Reason::NoMachineFits,
                    format!(
                        "needs {} on one machine; {}{spill}",
                        machine_amounts(&need),
                        labels(&|n| {
                            let machines = &p.nodes[n as usize].machines;
                            let most = |f: fn(&Resources) -> u64| machines.iter().map(f).max().unwrap_or(0);
                            let best = Resources {
                                cpu: most(|r| r.cpu),
                                memory: most(|r| r.memory),
                                storage: 0,
                                gpu: most(|r| r.gpu),
                            };
                            format!(
                                "the most free on one of the {} machines of {} is {}",
                                machines.len(),
                                p.node_label(n),
                                machine_amounts(&best)
                            )
                        })
                    ),
                )
            }
            Stage::AntiAffinity | Stage::Passed => {
                let mut clashes = Vec::new();
                for &m in group {
                    for &w in p.anti_affinity.row(m as usize) {
                        let on = state.node_of[w as usize];
                        if at.contains(&on) {
                            clashes.push(format!("{} (on {})", p.systems[w as usize].system_id, p.node_label(on)));
                        }
                    }
                }
                (Reason::AntiAffinity, format!("must not share a node with {}{spill}", clashes.join(", ")))
            }
        };
        Failure { retryable: matches!(reason, Reason::AntiAffinity | Reason::NoMachineFits), reason, message }
    }

    pub(super) fn capacity_message(&self, state: &Placement, need: Resources, nodes: &[u32], spill: &str) -> String {
        let p = self.p;
        let free = |n: u32| p.nodes[n as usize].allocatable.minus(state.allocated[n as usize]);
        for kind in ResourceKind::ALL {
            let best = nodes.iter().copied().max_by_key(|n| (kind.of(&free(*n)), std::cmp::Reverse(*n)));
            if let Some(best) = best {
                let most = free(best);
                if kind.of(&need) > kind.of(&most) {
                    let what = if nodes.len() > 1 { "on eligible nodes " } else { "" };
                    let gap = with(kind, kind.of(&need) - kind.of(&most));
                    return format!(
                        "province capacity: needs {}; the most free {what}is {} ({}), short by {}{spill}",
                        explain::amount(kind, &need),
                        explain::amount(kind, &most),
                        p.node_label(best),
                        explain::amount(kind, &gap)
                    );
                }
            }
        }
        let detail: Vec<String> = nodes
            .iter()
            .map(|n| {
                let f = free(*n);
                let gap = need.minus(f);
                let short: Vec<String> = ResourceKind::ALL
                    .iter()
                    .filter(|k| k.of(&need) > k.of(&f))
                    .map(|k| format!("{} (short by {})", explain::amount(*k, &f), explain::amount(*k, &gap)))
                    .collect();
                format!("{} has {} free", p.node_label(*n), short.join(", "))
            })
            .collect();
        let needs: Vec<String> =
            ResourceKind::ALL.iter().filter(|k| k.of(&need) > 0).map(|k| explain::amount(*k, &need)).collect();
        format!(
            "province capacity: needs {}; no eligible node has all of it free: {}{spill}",
            needs.join(", "),
            detail.join("; ")
        )
    }
}

/// The amounts that count on one machine: cpu and memory, and gpu when any.
fn machine_amounts(r: &Resources) -> String {
    let mut parts = vec![explain::amount(ResourceKind::Cpu, r), explain::amount(ResourceKind::Memory, r)];
    if r.gpu > 0 {
        parts.push(explain::amount(ResourceKind::Gpu, r));
    }
    parts.join(", ")
}

fn with(kind: ResourceKind, value: u64) -> Resources {
    let mut r = Resources::default();
    match kind {
        ResourceKind::Cpu => r.cpu = value,
        ResourceKind::Memory => r.memory = value,
        ResourceKind::Storage => r.storage = value,
        ResourceKind::Gpu => r.gpu = value,
    }
    r
}

fn arch_list(archs: &[Architecture]) -> String {
    let names: Vec<&str> = archs
        .iter()
        .map(|a| match a {
            Architecture::X86_64 => "x86_64",
            Architecture::Aarch64 => "aarch64",
        })
        .collect();
    match names.len() {
        0 => "no architecture".to_owned(),
        1 => format!("{} only", names[0]),
        _ => names.join(", "),
    }
}
