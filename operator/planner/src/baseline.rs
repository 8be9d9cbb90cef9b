//! The capacity-only first-fit baseline, for comparison with [`crate::plan`].
//!
//! Systems are taken in input order and each goes to the first node, in input order, whose
//! free allocatable holds all of its resources. Nothing else is considered: not locality,
//! quota, security level, architecture, cordons, affinity, dependencies, waves or current
//! phases. Retire/Retain systems are still left out (they are not migrations). There is no
//! time schedule: assignments carry no times, and both `makespanHours` and `lowerBoundHours`
//! are the busiest node's migration work divided by its `maxConcurrentMigrations` — the same
//! per-node bound the constrained planner reports, i.e. an optimistic makespan.

use crate::dependencies::Failure;
use crate::explain::{self, Reason, ResourceKind};
use crate::index::{Kind, Problem};
use crate::model::{Node, PlanInput, System};
use crate::output::{Algorithm, Plan};
use crate::placement::Placement;
use crate::plan::assemble;
use crate::schedule::{ceil_div, replication_seconds};

/// Capacity-only first-fit over `input`, in input order; see the module docs.
pub fn first_fit(input: &PlanInput) -> Plan {
    let p = Problem::new(input);
    let n = p.systems.len();
    let position = |s: &System| (s as *const System as usize - input.systems.as_ptr() as usize) / size_of::<System>();
    let node_position = |x: &Node| (x as *const Node as usize - input.nodes.as_ptr() as usize) / size_of::<Node>();
    let mut order: Vec<u32> = (0..n as u32).filter(|i| p.kind[*i as usize] != Kind::NotMigrated).collect();
    order.sort_unstable_by_key(|i| position(p.systems[*i as usize]));
    let mut nodes: Vec<u32> = (0..p.nodes.len() as u32).collect();
    nodes.sort_unstable_by_key(|i| node_position(p.nodes[*i as usize]));

    let mut placement = Placement::empty(&p);
    let mut failure: Vec<Option<Failure>> = vec![None; n];
    let mut work = vec![0i64; p.nodes.len()];
    let fixed = i64::from(p.settings.provisioning_minutes)
        + i64::from(p.settings.cutover_minutes)
        + i64::from(p.settings.verification_minutes);
    for s in order {
        let system = p.systems[s as usize];
        let need = system.resources;
        let found = nodes.iter().copied().find(|node| {
            let free = p.nodes[*node as usize].allocatable.minus(placement.allocated[*node as usize]);
            need.fits_in(free)
        });
        match found {
            Some(node) => {
                placement.assign(&p, s, node);
                let nd = p.nodes[node as usize];
                work[node as usize] += fixed * 60
                    + replication_seconds(
                        system.data_volume,
                        nd.migration_bandwidth_mbps,
                        nd.max_concurrent_migrations.max(1),
                    );
            }
            None => {
                let needs: Vec<String> =
                    ResourceKind::ALL.iter().filter(|k| k.of(&need) > 0).map(|k| explain::amount(*k, &need)).collect();
                failure[s as usize] = Some(Failure {
                    reason: Reason::InsufficientCapacity,
                    message: format!("needs {}; no node has it free (first-fit)", needs.join(", ")),
                    retryable: false,
                });
            }
        }
    }
    let bound = work
        .iter()
        .enumerate()
        .map(|(i, w)| ceil_div(*w, i64::from(p.nodes[i].max_concurrent_migrations.max(1))))
        .max()
        .unwrap_or(0)
        + p.settings.now;
    let mut plan = assemble(&p, Algorithm::FirstFit, &failure, &placement, &vec![None; n], bound, bound);
    // First-fit ignores phases: every system it places counts as newly placed.
    plan.in_flight = 0;
    plan.completed = 0;
    plan
}
