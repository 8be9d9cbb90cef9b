//! The pure half of the CloudNode controller: validate a node against its siblings and build
//! its status. No client; tested from plain values.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use suyun_crds::conditions::{DesiredCondition, merge_conditions};
use suyun_crds::v1alpha1::{
    CapacitySource, CloudNode, CloudNodeStatus, MemberClusterStatus, Tier, condition_types, reasons,
};

use crate::accounts::NodeAccount;
use crate::capacity::{self, Amounts};
use crate::members::NoClient;
use crate::members::health::Reachability;

/// What the CloudNode controller knows beyond the node itself.
#[derive(Debug)]
pub struct Observed<'a> {
    /// Every CloudNode in the cluster (including this one).
    pub cloud_nodes: &'a [Arc<CloudNode>],
    /// Kubernetes Nodes labelled for this CloudNode (Ready or not).
    pub nodes: Vec<&'a Node>,
    /// The node's account: what its placed systems hold, by phase.
    pub account: NodeAccount,
    /// Utilisation (percent) above which CapacityPressure is True.
    pub pressure_threshold: f64,
    /// The member cluster behind the node, for a node with `spec.cluster` (then `nodes` are the
    /// member's Nodes matching its `nodeSelector`).
    pub member: Option<MemberObserved<'a>>,
}

/// What is known of a CloudNode's member cluster.
#[derive(Debug, Clone, Copy)]
pub struct MemberObserved<'a> {
    /// Whether it answers.
    pub reach: &'a Reachability,
    /// Why there is no client, if there is none.
    pub no_client: Option<&'a NoClient>,
    /// The member's Pods bound to a machine (what each machine has free).
    pub pods: &'a [Arc<Pod>],
    /// Whether the member's Nodes are known (its caches hold a complete list). When they are
    /// not (no client, or not listed yet after a start), the capacity figures of the previous
    /// status are kept, marked stale, rather than dropping to nothing.
    pub nodes_listed: bool,
}

/// How long `status.cluster.lastSeen` may lag behind the last successful probe: refreshing it on
/// every probe would write every member-backed CloudNode's status every few seconds.
pub const LAST_SEEN_REFRESH_SECONDS: i64 = 60;

/// The member cluster's part of the status: `status.cluster` and the ClusterReachable
/// condition. `lastSeen` is kept from `previous` while the member keeps answering and the
/// last probe is less than [`LAST_SEEN_REFRESH_SECONDS`] newer.
pub fn member_status(
    member: &MemberObserved<'_>,
    previous: Option<&MemberClusterStatus>,
) -> (MemberClusterStatus, DesiredCondition) {
    let reachable = member.no_client.is_none() && member.reach.reachable();
    let probed = member.reach.last_seen;
    let kept = previous.filter(|p| p.reachable == reachable).and_then(|p| p.last_seen.clone()).filter(|t| {
        probed.is_some_and(|probed| probed - t.0.as_second() < LAST_SEEN_REFRESH_SECONDS && probed >= t.0.as_second())
    });
    let last_seen = kept.or_else(|| probed.and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t).ok()).map(Time));
    let status = MemberClusterStatus {
        reachable,
        kubernetes_version: member.reach.version.clone(),
        last_seen,
        capacity_stale: !reachable || !member.nodes_listed,
    };
    (status, member.reach.condition(member.no_client))
}

/// A spec problem admission cannot see, with the reason it is reported under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// PascalCase reason.
    pub reason: &'static str,
    /// Sentence that says what is wrong and what to do.
    pub message: String,
}

/// Checks what needs other objects: the parent exists and is the Provincial node, and no other
/// Provincial node was there first (the oldest one, then the first by name, is the province's).
pub fn validate(node: &CloudNode, cloud_nodes: &[Arc<CloudNode>]) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    if let Some(parent) = node.spec.parent.as_deref() {
        match cloud_nodes.iter().find(|n| n.name_any() == parent) {
            None => problems.push(SpecProblem {
                reason: "ParentNotFound",
                message: format!(
                    "spec.parent names CloudNode {parent:?}, which does not exist; create it or correct spec.parent"
                ),
            }),
            Some(p) if p.spec.tier != Tier::Provincial => problems.push(SpecProblem {
                reason: "ParentNotProvincial",
                message: format!(
                    "spec.parent names CloudNode {parent:?}, a {} node; the parent must be the Provincial node",
                    p.spec.tier.as_str()
                ),
            }),
            Some(_) => {}
        }
    }
    if node.spec.tier == Tier::Provincial {
        let key = |n: &CloudNode| (n.metadata.creation_timestamp.clone(), n.name_any());
        let first = cloud_nodes.iter().filter(|n| n.spec.tier == Tier::Provincial).min_by_key(|n| key(n));
        if let Some(first) = first.filter(|f| f.name_any() != node.name_any()) {
            problems.push(SpecProblem {
                reason: "DuplicateProvincialNode",
                message: format!(
                    "spec.tier: CloudNode {:?} ({}) is already the Provincial node; a province has one primary node, so make this node a City node or remove it",
                    first.name_any(),
                    first.spec.region_code
                ),
            });
        }
    }
    problems
}

/// Builds the status the node should have now. `previous` keeps condition transition times.
pub fn build(node: &CloudNode, observed: &Observed<'_>, now: &Time) -> CloudNodeStatus {
    let previous = node.status.clone().unwrap_or_default();
    let mut problems = validate(node, observed.cloud_nodes);

    let (raw_capacity, ready_nodes) = match node.spec.capacity_from {
        CapacitySource::Declared => match node.spec.capacity.as_ref().map(Amounts::from_resources) {
            Some(Ok(c)) => (c, None),
            Some(Err(e)) => {
                problems.push(SpecProblem {
                    reason: "InvalidQuantity",
                    message: format!("spec.capacity.{}: {}", e.resource, e.source),
                });
                (Amounts::default(), None)
            }
            None => {
                problems.push(SpecProblem {
                    reason: "MissingCapacity",
                    message: "spec.capacity is required unless spec.capacityFrom is Nodes".into(),
                });
                (Amounts::default(), None)
            }
        },
        CapacitySource::Nodes if observed.member.is_some_and(|m| !m.nodes_listed) => {
            let kept = previous.capacity.as_ref().map(Amounts::from_amounts).and_then(Result::ok);
            (kept.unwrap_or_default(), previous.ready_nodes.or(Some(0)))
        }
        CapacitySource::Nodes => match capacity::sum_ready_nodes(observed.nodes.iter().copied()) {
            Ok((sum, ready)) => (sum, Some(ready)),
            Err(e) => {
                problems.push(SpecProblem { reason: "InvalidNodeCapacity", message: e.to_string() });
                (Amounts::default(), Some(0))
            }
        },
    };
    let reserved = match node.spec.reserved.as_ref().map(Amounts::from_amounts).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            problems.push(SpecProblem {
                reason: "InvalidQuantity",
                message: format!("spec.reserved.{}: {}", e.resource, e.source),
            });
            Amounts::default()
        }
    };
    let allocatable = capacity::allocatable(raw_capacity, reserved, &node.spec.overcommit);
    // What one machine can hold: known when the capacity is read from a member's Nodes.
    let largest_free = match (&observed.member, node.spec.capacity_from) {
        (Some(member), CapacitySource::Nodes) if !member.nodes_listed => previous.largest_free_on_one_machine.clone(),
        (Some(member), CapacitySource::Nodes) => {
            match capacity::machines_free(observed.nodes.iter().copied(), member.pods, &node.spec.overcommit) {
                Ok(machines) => {
                    let mut largest = capacity::largest_free(&machines).to_resource_amounts();
                    largest.storage = None;
                    Some(largest)
                }
                // Already reported: the same Node fails the sum above.
                Err(_) => None,
            }
        }
        _ => None,
    };
    let member = observed.member.as_ref().map(|m| member_status(m, previous.cluster.as_ref()));
    let allocated = observed.account.allocated;
    let utilization = [
        ("cpu", allocated.cpu, allocatable.cpu),
        ("memory", allocated.memory, allocatable.memory),
        ("storage", allocated.storage, allocatable.storage),
        ("gpu", allocated.gpu, allocatable.gpu),
    ]
    .into_iter()
    .filter(|(name, used, total)| *name != "gpu" || *used > 0 || *total > 0)
    .map(|(name, used, total)| (name.to_owned(), capacity::utilization_percent(used, total)))
    .collect::<std::collections::BTreeMap<_, _>>();

    let ready = if let Some(p) = problems.first() {
        let message = problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ");
        DesiredCondition::new(condition_types::READY, false, p.reason, message)
    } else if let Some((_, reachable)) = member.as_ref().filter(|(s, _)| !s.reachable) {
        DesiredCondition::new(
            condition_types::READY,
            false,
            "MemberUnreachable",
            format!("{} (ClusterReachable: {})", reachable.message, reachable.reason),
        )
    } else if allocatable.cpu <= 0 || allocatable.memory <= 0 {
        let why = match ready_nodes {
            Some(0) if observed.member.is_some() => {
                "no Ready Node in the member cluster matches spec.cluster.nodeSelector".to_owned()
            }
            Some(0) => "no Ready Kubernetes Node is labelled suyun.io/cloud-node=".to_owned() + &node.name_any(),
            Some(n) => format!("{n} Ready Nodes leave no allocatable cpu or memory after the reservation"),
            None => "the reservation leaves no allocatable cpu or memory".to_owned(),
        };
        DesiredCondition::new(condition_types::READY, false, "NoAllocatableCapacity", why)
    } else {
        let source = match ready_nodes {
            Some(n) => format!("capacity from {n} Ready Nodes"),
            None => "declared capacity".to_owned(),
        };
        DesiredCondition::new(
            condition_types::READY,
            true,
            reasons::RECONCILED,
            format!("{source}; allocatable {} cpu", suyun_crds::quantity::format_cpu(allocatable.cpu).0),
        )
    };
    let hottest =
        utilization.iter().filter(|(_, v)| **v > observed.pressure_threshold).max_by(|a, b| a.1.total_cmp(b.1));
    let pressure = match hottest {
        Some((resource, percent)) => DesiredCondition::new(
            condition_types::CAPACITY_PRESSURE,
            true,
            "AboveThreshold",
            format!("{resource} is {percent}% allocated, above the {}% threshold", observed.pressure_threshold),
        ),
        None => DesiredCondition::new(
            condition_types::CAPACITY_PRESSURE,
            false,
            "BelowThreshold",
            format!("every resource is at or below the {}% threshold", observed.pressure_threshold),
        ),
    };

    CloudNodeStatus {
        observed_generation: node.metadata.generation,
        capacity_source: Some(node.spec.capacity_from),
        ready_nodes,
        capacity: Some(raw_capacity.to_resource_amounts()),
        allocatable: Some(allocatable.to_resource_amounts()),
        allocated: Some(allocated.to_resource_amounts()),
        utilization,
        systems: observed.account.systems,
        systems_by_phase: observed.account.by_phase.clone(),
        tenants: observed.account.tenants,
        active_migrations: observed.account.active_migrations,
        largest_free_on_one_machine: largest_free,
        conditions: merge_conditions(
            &previous.conditions,
            [ready, pressure].into_iter().chain(member.as_ref().map(|(_, c)| c.clone())).collect(),
            node.metadata.generation,
            now,
        ),
        cluster: member.map(|(s, _)| s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use suyun_crds::v1alpha1::{CloudNodeSpec, Overcommit, Resources};

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn cloud_node(name: &str, tier: Tier, parent: Option<&str>, created: i64) -> Arc<CloudNode> {
        let mut n = CloudNode::new(
            name,
            CloudNodeSpec {
                tier,
                region_code: if tier == Tier::Provincial { "320000" } else { "320100" }.into(),
                display_name: name.into(),
                parent: parent.map(Into::into),
                capacity: Some(Resources {
                    cpu: k8s_openapi::apimachinery::pkg::api::resource::Quantity("100".into()),
                    memory: k8s_openapi::apimachinery::pkg::api::resource::Quantity("400Gi".into()),
                    storage: k8s_openapi::apimachinery::pkg::api::resource::Quantity("10Ti".into()),
                    gpu: None,
                }),
                capacity_from: CapacitySource::Declared,
                reserved: None,
                overcommit: Overcommit::default(),
                security_level: 2,
                architectures: vec![],
                max_concurrent_migrations: 4,
                migration_bandwidth_mbps: 1000,
                maintenance_windows: vec![],
                cordoned: false,
                cluster: None,
            },
        );
        n.metadata.generation = Some(1);
        n.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        Arc::new(n)
    }

    fn observed(nodes: &[Arc<CloudNode>]) -> Observed<'_> {
        Observed {
            cloud_nodes: nodes,
            nodes: vec![],
            account: NodeAccount::default(),
            pressure_threshold: 85.0,
            member: None,
        }
    }

    fn ready(status: &CloudNodeStatus) -> (&str, &str) {
        let c = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_valid_city_node_is_ready_with_its_allocatable() {
        let all =
            [cloud_node("jiangsu", Tier::Provincial, None, 1), cloud_node("nanjing", Tier::City, Some("jiangsu"), 2)];
        let status = build(&all[1], &observed(&all), &now());
        assert_eq!(ready(&status), ("True", "Reconciled"));
        assert_eq!(status.allocatable.unwrap().cpu.unwrap().0, "100");
        assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn a_missing_parent_is_a_condition_not_an_error() {
        let all = [cloud_node("nanjing", Tier::City, Some("jiangsu"), 2)];
        let status = build(&all[0], &observed(&all), &now());
        assert_eq!(ready(&status), ("False", "ParentNotFound"));
        let message = &status.conditions[0].message;
        assert!(message.contains("\"jiangsu\"") && message.contains("does not exist"), "{message}");
    }

    #[test]
    fn a_city_parent_is_refused() {
        let all = [
            cloud_node("suzhou", Tier::City, Some("jiangsu-x"), 1),
            cloud_node("nanjing", Tier::City, Some("suzhou"), 2),
        ];
        assert_eq!(ready(&build(&all[1], &observed(&all), &now())), ("False", "ParentNotProvincial"));
    }

    #[test]
    fn the_second_provincial_node_is_invalid_and_the_first_keeps_its_place() {
        let all =
            [cloud_node("jiangsu", Tier::Provincial, None, 1), cloud_node("jiangsu-2", Tier::Provincial, None, 5)];
        assert_eq!(ready(&build(&all[0], &observed(&all), &now())), ("True", "Reconciled"));
        assert_eq!(ready(&build(&all[1], &observed(&all), &now())), ("False", "DuplicateProvincialNode"));
    }

    #[test]
    fn capacity_pressure_follows_the_threshold() {
        let all = [cloud_node("jiangsu", Tier::Provincial, None, 1)];
        let mut obs = observed(&all);
        obs.account.allocated = Amounts { cpu: 90_000, ..Default::default() };
        let status = build(&all[0], &obs, &now());
        let pressure = status.conditions.iter().find(|c| c.type_ == "CapacityPressure").unwrap();
        assert_eq!(pressure.status, "True");
        assert!(pressure.message.contains("cpu is 90% allocated"), "{}", pressure.message);
        obs.account.allocated = Amounts { cpu: 85_000, ..Default::default() };
        let status = build(&all[0], &obs, &now());
        assert_eq!(status.conditions.iter().find(|c| c.type_ == "CapacityPressure").unwrap().status, "False");
    }

    #[test]
    fn nodes_source_without_ready_nodes_is_not_ready() {
        let mut n = (*cloud_node("jiangsu", Tier::Provincial, None, 1)).clone();
        n.spec.capacity_from = CapacitySource::Nodes;
        let all = [Arc::new(n)];
        let status = build(&all[0], &observed(&all), &now());
        assert_eq!(ready(&status), ("False", "NoAllocatableCapacity"));
        assert_eq!(status.ready_nodes, Some(0));
    }
}

#[cfg(test)]
mod member_tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::jiff::Timestamp;

    fn member_node() -> Arc<CloudNode> {
        let node: CloudNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "CloudNode", "metadata": {"name": "suzhou", "generation": 1},
            "spec": {"tier": "Provincial", "regionCode": "320000", "displayName": "苏州", "capacityFrom": "Nodes",
                     "securityLevel": 3, "cluster": {}}
        }))
        .unwrap();
        Arc::new(node)
    }

    fn machine(cpu: &str) -> Node {
        Node {
            metadata: kube::api::ObjectMeta { name: Some(format!("m-{cpu}")), ..Default::default() },
            status: Some(NodeStatus {
                allocatable: Some(
                    [("cpu".to_owned(), Quantity(cpu.into())), ("memory".to_owned(), Quantity("64Gi".into()))].into(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn build_with(
        node: &CloudNode,
        machines: &[Node],
        reach: &Reachability,
        listed: bool,
        now: i64,
    ) -> CloudNodeStatus {
        let all = [Arc::new(node.clone())];
        let observed = Observed {
            cloud_nodes: &all,
            nodes: machines.iter().collect(),
            account: NodeAccount::default(),
            pressure_threshold: 85.0,
            member: Some(MemberObserved { reach, no_client: None, pods: &[], nodes_listed: listed }),
        };
        build(node, &observed, &at(now))
    }

    fn condition<'a>(s: &'a CloudNodeStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_member_backed_node_shows_its_members_machines_reachability_and_keeps_what_it_cannot_see() {
        let mut node = (*member_node()).clone();
        let mut reach = Reachability::default();
        reach.succeeded("v1.34.4".into(), 1_000);
        let machines = [machine("16"), machine("8")];
        let s = build_with(&node, &machines, &reach, true, 1_000);
        assert_eq!(s.allocatable.as_ref().unwrap().cpu.as_ref().unwrap().0, "24");
        assert_eq!(s.largest_free_on_one_machine.as_ref().unwrap().cpu.as_ref().unwrap().0, "16");
        assert_eq!(condition(&s, "ClusterReachable"), ("True", "Reachable"));
        assert_eq!(condition(&s, "Ready"), ("True", "Reconciled"));
        let cluster = s.cluster.clone().unwrap();
        assert!(
            cluster.reachable && !cluster.capacity_stale && cluster.kubernetes_version.as_deref() == Some("v1.34.4")
        );
        assert_eq!(cluster.last_seen, Some(at(1_000)));

        // Heard from again 30 s later: lastSeen stays (no write every probe); 70 s later it moves.
        node.status = Some(s.clone());
        reach.succeeded("v1.34.4".into(), 1_030);
        assert_eq!(build_with(&node, &machines, &reach, true, 1_030).cluster.unwrap().last_seen, Some(at(1_000)));
        reach.succeeded("v1.34.4".into(), 1_070);
        assert_eq!(build_with(&node, &machines, &reach, true, 1_070).cluster.unwrap().last_seen, Some(at(1_070)));

        // Unreachable: not Ready, the last known capacity kept and marked stale.
        for _ in 0..crate::members::health::FAILURES_BEFORE_UNREACHABLE {
            reach.failed("connection refused".into());
        }
        let down = build_with(&node, &machines, &reach, true, 1_100);
        assert_eq!(condition(&down, "ClusterReachable"), ("False", "Unreachable"));
        assert_eq!(condition(&down, "Ready"), ("False", "MemberUnreachable"));
        assert!(down.cluster.as_ref().unwrap().capacity_stale);
        assert_eq!(down.allocatable.as_ref().unwrap().cpu.as_ref().unwrap().0, "24");

        // After a restart, before the member's Nodes are listed: the previous figures, stale,
        // not zero.
        reach.succeeded("v1.34.4".into(), 1_200);
        let unlisted = build_with(&node, &[], &reach, false, 1_200);
        assert_eq!(unlisted.allocatable.as_ref().unwrap().cpu.as_ref().unwrap().0, "24");
        assert_eq!(unlisted.ready_nodes, Some(2));
        assert_eq!(unlisted.largest_free_on_one_machine, s.largest_free_on_one_machine);
        assert!(unlisted.cluster.unwrap().capacity_stale);
    }
}
