//! Structural checks before placement: unknown references, dependency cycles, dependencies
//! that can only move in a later wave, and the propagation of a block to dependents and
//! `sameNodeAs` partners.

use std::collections::VecDeque;

use crate::explain::Reason;
use crate::index::{Kind, NONE, Problem};

/// Why one system is not in the plan.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Reason code.
    pub reason: Reason,
    /// Sentence with the numbers.
    pub message: String,
    /// Whether a later placement pass may still place it (capacity may be released).
    pub retryable: bool,
}

impl Failure {
    /// A failure no later pass can undo.
    pub fn fixed(reason: Reason, message: String) -> Option<Failure> {
        Some(Failure { reason, message, retryable: false })
    }
}

/// Runs every structural check, writes failures and propagates them. Returns a topological
/// order (dependencies first) of the `New` systems that are not blocked.
pub fn check(p: &Problem<'_>, failure: &mut [Option<Failure>]) -> Vec<u32> {
    let n = p.systems.len();
    // A topological order of every `New` system; those it cannot reach are in a cycle or
    // depend on one, and only they need the cycle search.
    let all = topological_order(p, |i| is_new(p, i));
    let new_systems = (0..n).filter(|i| is_new(p, *i)).count();
    if all.len() < new_systems {
        let mut ordered = vec![false; n];
        for &i in &all {
            ordered[i as usize] = true;
        }
        mark_cycles(p, failure, |i| is_new(p, i) && !ordered[i]);
    }
    let paused: Vec<bool> = p.waves.iter().map(|w| w.max_concurrent == Some(0)).collect();
    let (mut unknown_deps, mut unknown_same) =
        (p.unknown_deps.iter().peekable(), p.unknown_same_node.iter().peekable());
    for (i, f) in failure.iter_mut().enumerate() {
        // Most systems pass every reference check: test that on the dense arrays first.
        let listed = |list: &mut std::iter::Peekable<std::slice::Iter<'_, (u32, Vec<&str>)>>| {
            while list.next_if(|(j, _)| (*j as usize) < i).is_some() {}
            list.peek().is_some_and(|(j, _)| *j as usize == i)
        };
        let suspect = match p.kind[i] {
            Kind::NotMigrated => false,
            Kind::Completed | Kind::InFlight => p.unknown_node[i],
            Kind::New => {
                let (t, w) = (p.tenant_of[i], p.wave_of[i]);
                t == NONE
                    || p.tenant_home[t as usize] == NONE
                    || p.unknown_wave[i]
                    || (w != NONE && paused[w as usize])
                    || listed(&mut unknown_deps)
                    || listed(&mut unknown_same)
            }
        };
        if suspect && f.is_none() {
            *f = reference_failure(p, i);
        }
    }
    let seeds: Vec<u32> = (0..n as u32).filter(|i| failure[*i as usize].is_some()).collect();
    propagate(p, failure, seeds, false, |_| {});
    // Whatever is not blocked now is in `all` (its dependencies are, transitively).
    let order: Vec<u32> = all.into_iter().filter(|i| failure[*i as usize].is_none()).collect();
    let conflicts = wave_conflicts(p, &order, failure);
    if !conflicts.is_empty() {
        propagate(p, failure, conflicts, false, |_| {});
    }
    order.into_iter().filter(|i| failure[*i as usize].is_none()).collect()
}

fn is_new(p: &Problem<'_>, i: usize) -> bool {
    p.kind[i] == Kind::New
}

fn reference_failure(p: &Problem<'_>, i: usize) -> Option<Failure> {
    let s = p.systems[i];
    match p.kind[i] {
        Kind::NotMigrated => return None,
        Kind::Completed | Kind::InFlight => {
            return if p.unknown_node[i] {
                let node = s.node.as_deref().unwrap_or_default();
                Failure::fixed(Reason::UnknownNode, format!("is {:?} on node {node}, which does not exist", s.phase))
            } else {
                None
            };
        }
        Kind::New => {}
    }
    let tenant = p.tenant_of[i];
    if tenant == NONE {
        return Failure::fixed(
            Reason::UnknownTenant,
            format!("metadata.namespace {} names no Tenant (a system lives in its Tenant's Namespace)", s.tenant),
        );
    }
    if p.tenant_home[tenant as usize] == NONE {
        let t = p.tenants[tenant as usize];
        return Failure::fixed(
            Reason::UnknownNode,
            format!("spec.homeNode of Tenant {} names CloudNode {}, which does not exist", t.name, t.home_node),
        );
    }
    if p.unknown_wave[i] {
        let wave = s.wave.as_deref().unwrap_or_default();
        return Failure::fixed(Reason::UnknownWave, format!("wave {wave} does not exist"));
    }
    let wave = p.wave_of[i];
    if wave != NONE && p.waves[wave as usize].max_concurrent == Some(0) {
        return Failure::fixed(Reason::WavePaused, format!("wave {} has maxConcurrent 0", p.waves[wave as usize].name));
    }
    if let Ok(k) = p.unknown_deps.binary_search_by_key(&(i as u32), |(j, _)| *j) {
        let ids = p.unknown_deps[k].1.join(", ");
        return Failure::fixed(
            Reason::UnknownDependency,
            format!("spec.dependsOn names {ids}, which do(es) not exist"),
        );
    }
    if let Ok(k) = p.unknown_same_node.binary_search_by_key(&(i as u32), |(j, _)| *j) {
        let ids = p.unknown_same_node[k].1.join(", ");
        return Failure::fixed(
            Reason::SameNodeGroupUnplaceable,
            format!("spec.sameNodeAs names {ids}, which do(es) not exist"),
        );
    }
    None
}

/// Blocks every member of every dependency cycle among the systems `candidate` admits (Tarjan's
/// SCC, iterative), with the shortest cycle through the member spelled out.
fn mark_cycles(p: &Problem<'_>, failure: &mut [Option<Failure>], candidate: impl Fn(usize) -> bool) {
    let n = p.systems.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut calls: Vec<(u32, usize)> = Vec::new();
    let mut next = 0u32;
    let mut component = vec![NONE; n];
    let mut components: Vec<Vec<u32>> = Vec::new();
    for root in 0..n {
        if index[root] != NONE || !candidate(root) {
            continue;
        }
        calls.push((root as u32, 0));
        while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
            let vu = v as usize;
            if *pos == 0 && index[vu] == NONE {
                index[vu] = next;
                low[vu] = next;
                next += 1;
                stack.push(v);
                on_stack[vu] = true;
            }
            let edges = p.deps.row(vu);
            if let Some(&w) = edges.get(*pos) {
                *pos += 1;
                let wu = w as usize;
                if !candidate(wu) {
                    continue;
                }
                if index[wu] == NONE {
                    calls.push((w, 0));
                } else if on_stack[wu] {
                    low[vu] = low[vu].min(index[wu]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent as usize] = low[parent as usize].min(low[vu]);
            }
            if low[vu] == index[vu] {
                let mut members = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w as usize] = false;
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                let cyclic = members.len() > 1 || p.deps.row(vu).contains(&v);
                if cyclic {
                    members.sort_unstable();
                    for &m in &members {
                        component[m as usize] = components.len() as u32;
                    }
                    components.push(members);
                }
            }
        }
    }
    for members in &components {
        for &m in members {
            let cycle = shortest_cycle(p, m, &component);
            failure[m as usize] =
                Failure::fixed(Reason::DependencyCycle, format!("spec.dependsOn forms a dependency cycle {cycle}"));
        }
    }
}

/// "A → B → C → A": the shortest cycle through `start` inside its component.
fn shortest_cycle(p: &Problem<'_>, start: u32, component: &[u32]) -> String {
    let comp = component[start as usize];
    let mut parent: std::collections::HashMap<u32, u32> = Default::default();
    let mut queue = VecDeque::from([start]);
    let mut last = start;
    'bfs: while let Some(v) = queue.pop_front() {
        for &w in p.deps.row(v as usize) {
            if component[w as usize] != comp {
                continue;
            }
            if w == start {
                last = v;
                break 'bfs;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    let mut path = vec![start];
    let mut v = last;
    while v != start {
        path.push(v);
        v = parent[&v];
    }
    // `path` is start, then the chain back from `last`; reverse the chain to walk forwards.
    path[1..].reverse();
    path.push(start);
    path.iter().map(|i| p.systems[*i as usize].system_id.as_str()).collect::<Vec<_>>().join(" → ")
}

/// Kahn's order over the systems `live` admits (dependencies first), ties by index.
fn topological_order(p: &Problem<'_>, live: impl Fn(usize) -> bool) -> Vec<u32> {
    let n = p.systems.len();
    let mut indegree = vec![0u32; n];
    let mut order: Vec<u32> = Vec::with_capacity(n);
    for (i, d) in indegree.iter_mut().enumerate() {
        if live(i) {
            *d = p.deps.row(i).iter().filter(|j| live(**j as usize)).count() as u32;
            if *d == 0 {
                order.push(i as u32);
            }
        }
    }
    let mut head = 0;
    while head < order.len() {
        let v = order[head] as usize;
        head += 1;
        for &w in p.dependents.row(v) {
            let wu = w as usize;
            if live(wu) {
                indegree[wu] -= 1;
                if indegree[wu] == 0 {
                    order.push(w);
                }
            }
        }
    }
    order
}

/// Blocks systems whose dependencies (through systems without a wave) need a later wave.
fn wave_conflicts(p: &Problem<'_>, order: &[u32], failure: &mut [Option<Failure>]) -> Vec<u32> {
    // Per system: the highest wave order it has to wait for, and which wave that is.
    let mut needs: Vec<(i64, u32)> = vec![(i64::MIN, NONE); p.systems.len()];
    let mut conflicts = Vec::new();
    for &v in order {
        let vu = v as usize;
        let own = p.wave_of[vu];
        let mut need = (i64::MIN, NONE);
        let mut culprit = NONE;
        for &d in p.deps.row(vu) {
            let du = d as usize;
            if p.kind[du] != Kind::New {
                continue;
            }
            let dep_need = match p.wave_of[du] {
                NONE => needs[du],
                w => (i64::from(p.waves[w as usize].order), w),
            };
            if dep_need.0 > need.0 {
                need = dep_need;
                culprit = d;
            }
        }
        if own != NONE {
            let wave = p.waves[own as usize];
            if need.0 > i64::from(wave.order) && failure[vu].is_none() {
                let later = p.waves[need.1 as usize];
                failure[vu] = Failure::fixed(
                    Reason::WaveOrderConflict,
                    format!(
                        "depends on {}, which moves with wave {} (order {}), after its own \
                         wave {} (order {})",
                        p.systems[culprit as usize].system_id, later.name, later.order, wave.name, wave.order
                    ),
                );
                conflicts.push(v);
            }
            needs[vu] = (i64::from(wave.order), own);
        } else {
            needs[vu] = need;
        }
    }
    conflicts
}

/// Spreads failures: a `New` system depending on a failed one fails with
/// DependencyNotReady, a `New` `sameNodeAs` partner with SameNodeGroupUnplaceable.
/// `on_fail` is called for every system newly failed here (placement uses it to release).
pub fn propagate(
    p: &Problem<'_>,
    failure: &mut [Option<Failure>],
    seeds: Vec<u32>,
    retryable: bool,
    mut on_fail: impl FnMut(u32),
) {
    let mut work = seeds;
    while let Some(f) = work.pop() {
        let fu = f as usize;
        let (reason, id) = match &failure[fu] {
            Some(x) => (x.reason, p.systems[fu].system_id.as_str()),
            None => continue,
        };
        for &d in p.dependents.row(fu) {
            let du = d as usize;
            if is_new(p, du) && failure[du].is_none() {
                failure[du] = Some(Failure {
                    reason: Reason::DependencyNotReady,
                    message: format!("depends on {id}, which is not placed ({reason})"),
                    retryable,
                });
                on_fail(d);
                work.push(d);
            }
        }
        for &g in p.same_node.row(fu) {
            let gu = g as usize;
            if is_new(p, gu) && failure[gu].is_none() {
                failure[gu] = Some(Failure {
                    reason: Reason::SameNodeGroupUnplaceable,
                    message: format!("must share a node with {id}, which is not placed ({reason})"),
                    retryable,
                });
                on_fail(g);
                work.push(g);
            }
        }
    }
}
