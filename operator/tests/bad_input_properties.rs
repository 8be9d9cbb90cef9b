//! Property tests of the operator's pure steps on arbitrary, mostly invalid, input — what
//! admission refuses and what `suyunctl plan -f` reads without admission: converting objects
//! into the planner's input and planning never panic, every object that cannot be converted is
//! reported with its field, and the CloudNode and Tenant status builders never panic and name
//! the field of an unreadable quantity.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use proptest::prelude::*;
use suyun_crds::v1alpha1::{
    Architecture, CapacitySource, Classification, CloudNode, CloudNodeSpec, GovSystem, GovSystemSpec, GovSystemStatus,
    MigrationWave, MigrationWaveSpec, Overcommit, Phase, Placement, ResourceAmounts, Resources, Strategy as Migration,
    SystemArchitecture, Tenant, TenantLevel, TenantQuota, TenantSpec, Tier, Weekday, Window,
};
use suyun_operator::accounts::{NodeAccount, TenantAccount};
use suyun_operator::capacity::Amounts;
use suyun_operator::cloud_node::status::{self, Observed};
use suyun_operator::plan_input::{Objects, plan_input_lenient};

/// Quantity text: well-formed, malformed, huge, tiny, signed, empty, non-ASCII.
fn quantity() -> impl Strategy<Value = Quantity> {
    prop_oneof![
        "[0-9]{1,4}(m|Ki|Mi|Gi|Ti|k|M|G|T)?",
        "[-+]?[0-9]{0,40}(\\.[0-9]{0,40})?([eE][-+]?[0-9]{1,6}|n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?",
        "[-+0-9.eEkKMGTPinum ]{0,40}",
        "\\PC{0,12}",
    ]
    .prop_map(Quantity)
}

fn resources() -> impl Strategy<Value = Resources> {
    (quantity(), quantity(), quantity(), proptest::option::of(quantity()))
        .prop_map(|(cpu, memory, storage, gpu)| Resources { cpu, memory, storage, gpu })
}

fn amounts() -> impl Strategy<Value = ResourceAmounts> {
    use proptest::option::of;
    (of(quantity()), of(quantity()), of(quantity()), of(quantity()))
        .prop_map(|(cpu, memory, storage, gpu)| ResourceAmounts { cpu, memory, storage, gpu })
}

fn window() -> impl Strategy<Value = Window> {
    (proptest::collection::vec(0u8..7, 0..9), "\\PC{0,6}|[0-9]{2}:[0-9]{2}", any::<u32>()).prop_map(
        |(days, start, duration_minutes)| Window {
            days: days
                .into_iter()
                .map(|d| {
                    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun]
                        [d as usize]
                })
                .collect(),
            start,
            duration_minutes,
        },
    )
}

fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![any::<f64>(), -10.0f64..100.0, Just(f64::NAN), Just(f64::INFINITY), Just(f64::MAX)]
}

/// Names drawn from a small set, so that references sometimes resolve and sometimes dangle.
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["p", "c1", "c2", "t1", "t2", "missing", "", "\\PC{0,8}"].prop_map(String::from)
}

fn cloud_node() -> impl Strategy<Value = CloudNode> {
    (
        (name(), any::<bool>(), "\\PC{0,8}|3[0-9]{5}", proptest::option::of(name())),
        (proptest::option::of(resources()), any::<bool>(), proptest::option::of(amounts())),
        (ratio(), ratio(), ratio()),
        (any::<u8>(), proptest::collection::vec(any::<bool>(), 0..4), any::<u32>(), any::<u32>()),
        (proptest::collection::vec(window(), 0..3), any::<bool>(), proptest::option::of(any::<i64>())),
    )
        .prop_map(
            |(
                (name, provincial, region_code, parent),
                (capacity, from_nodes, reserved),
                (cpu, memory, storage),
                (security_level, archs, max_concurrent_migrations, migration_bandwidth_mbps),
                (maintenance_windows, cordoned, created),
            )| {
                let mut node = CloudNode::new(
                    &name,
                    CloudNodeSpec {
                        tier: if provincial { Tier::Provincial } else { Tier::City },
                        region_code,
                        display_name: name.clone(),
                        parent,
                        capacity,
                        capacity_from: if from_nodes { CapacitySource::Nodes } else { CapacitySource::Declared },
                        reserved,
                        overcommit: Overcommit { cpu, memory, storage },
                        security_level,
                        architectures: archs
                            .into_iter()
                            .map(|a| if a { Architecture::X86_64 } else { Architecture::Aarch64 })
                            .collect(),
                        max_concurrent_migrations,
                        migration_bandwidth_mbps,
                        maintenance_windows,
                        cordoned,
                        cluster: None,
                    },
                );
                node.metadata.creation_timestamp =
                    created.and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s % 100_000_000_000).ok()).map(Time);
                node
            },
        )
}

fn tenant() -> impl Strategy<Value = Tenant> {
    (name(), 0u8..3, "\\PC{0,8}|3[0-9]{5}", name(), (quantity(), quantity(), quantity(), any::<u32>()), any::<u8>())
        .prop_map(|(name, level, region_code, home_node, (cpu, memory, storage, max_systems), security_level)| {
            Tenant::new(
                &name,
                TenantSpec {
                    display_name: name.clone(),
                    level: [TenantLevel::Provincial, TenantLevel::City, TenantLevel::County][level as usize],
                    region_code,
                    home_node,
                    quota: TenantQuota { cpu, memory, storage, max_systems },
                    owners: vec![],
                    security_level,
                },
            )
        })
}

/// systemIds from a small set: duplicates, cycles and unknown dependencies arise by themselves.
fn system_id() -> impl Strategy<Value = String> {
    prop_oneof!["JS-320100-000[0-5]", "\\PC{0,12}"].prop_map(String::from)
}

fn gov_system() -> impl Strategy<Value = GovSystem> {
    use proptest::collection::vec;
    (
        (name(), system_id(), any::<u8>(), 0u8..3, resources(), proptest::option::of(quantity())),
        (vec(system_id(), 0..4), vec(system_id(), 0..3), vec(system_id(), 0..3)),
        (proptest::option::of(name()), vec(name(), 0..3), any::<bool>(), any::<u32>(), 0u8..5),
        (proptest::option::of(0usize..12), proptest::option::of(name()), proptest::option::of(any::<i64>())),
    )
        .prop_map(
            |(
                (namespace, system_id, security_level, arch, resources, data_volume),
                (depends_on, same_node_as, anti_affinity_with),
                (preferred_node, allowed_nodes, allow_spillover, priority, strategy),
                (phase, node, started),
            )| {
                let mut s = GovSystem::new(
                    &system_id.to_lowercase(),
                    GovSystemSpec {
                        system_id,
                        display_name: "x".into(),
                        classification: Classification::Internal,
                        residency_waiver: None,
                        security_level,
                        architecture: [
                            SystemArchitecture::Any,
                            SystemArchitecture::X86_64,
                            SystemArchitecture::Aarch64,
                        ][arch as usize],
                        resources,
                        data_volume,
                        depends_on,
                        same_node_as,
                        anti_affinity_with,
                        placement: Some(Placement { preferred_node, allowed_nodes, allow_spillover }),
                        priority,
                        strategy: [
                            Migration::Rehost,
                            Migration::Replatform,
                            Migration::Refactor,
                            Migration::Retire,
                            Migration::Retain,
                        ][strategy as usize],
                    },
                );
                s.metadata.namespace = Some(namespace);
                s.metadata.labels = Some([("suyun.io/wave".to_owned(), "w".to_owned())].into());
                s.status = Some(GovSystemStatus {
                    phase: phase.map(|p| Phase::ALL[p]),
                    node,
                    started_at: started
                        .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t % 100_000_000_000).ok())
                        .map(Time),
                    ..Default::default()
                });
                s
            },
        )
}

fn wave() -> impl Strategy<Value = MigrationWave> {
    (name(), any::<u32>(), any::<u32>(), proptest::option::of(any::<i64>()), proptest::collection::vec(window(), 0..3))
        .prop_map(|(name, order, max_concurrent, not_before, windows)| {
            let spec: MigrationWaveSpec = serde_json::from_value(serde_json::json!({
                "selector": {"matchLabels": {"suyun.io/wave": "w"}}, "executor": "Simulated"
            }))
            .expect("a minimal wave");
            MigrationWave::new(
                &name,
                MigrationWaveSpec {
                    selector: LabelSelector { match_labels: spec.selector.match_labels, match_expressions: None },
                    order,
                    max_concurrent,
                    not_before: not_before
                        .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t % 100_000_000_000).ok())
                        .map(Time),
                    windows,
                    ..spec
                },
            )
        })
}

fn objects() -> impl Strategy<Value = Objects> {
    use proptest::collection::vec;
    (vec(cloud_node(), 0..4), vec(tenant(), 0..3), vec(gov_system(), 0..6), vec(wave(), 0..2)).prop_map(
        |(nodes, tenants, systems, waves)| Objects {
            cloud_nodes: nodes.into_iter().map(Arc::new).collect(),
            tenants: tenants.into_iter().map(Arc::new).collect(),
            systems: systems.into_iter().map(Arc::new).collect(),
            waves: waves.into_iter().map(Arc::new).collect(),
            ..Default::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Conversion never panics; each object left out is reported with a field path; planning
    /// what is left never panics either.
    #[test]
    fn planner_input_and_plan_never_panic(objects in objects(), now in 0i64..4_000_000_000) {
        let (input, errors) = plan_input_lenient(&objects, now);
        for e in &errors {
            prop_assert!(e.field.starts_with("spec.") || e.field.starts_with("status."), "{e}");
        }
        let total = objects.cloud_nodes.len() + objects.tenants.len() + objects.systems.len();
        prop_assert_eq!(input.nodes.len() + input.tenants.len() + input.systems.len() + errors.len(), total);
        let _ = suyun_planner::plan(&input);
    }

    /// The CloudNode status is always built, and an unreadable capacity or reservation is
    /// `Ready=False` with a reason and the field.
    #[test]
    fn cloud_node_status_never_panics(nodes in proptest::collection::vec(cloud_node(), 1..4), cpu in 0..i64::MAX, threshold in 0.0f64..100.0) {
        let nodes: Vec<Arc<CloudNode>> = nodes.into_iter().map(Arc::new).collect();
        let observed = Observed {
            cloud_nodes: &nodes,
            nodes: vec![],
            account: NodeAccount { allocated: Amounts { cpu: i128::from(cpu), ..Amounts::default() }, ..NodeAccount::default() },
            pressure_threshold: threshold,
            member: None,
        };
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let built = status::build(&nodes[0], &observed, &now);
        let ready = built.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready is always set");
        let spec = &nodes[0].spec;
        let unreadable = |q: Option<&Quantity>| q.is_some_and(|q| suyun_crds::quantity::milli(q).is_err());
        let bad_capacity = spec.capacity_from == CapacitySource::Declared
            && spec.capacity.as_ref().is_some_and(|c| [Some(&c.cpu), Some(&c.memory), Some(&c.storage), c.gpu.as_ref()].into_iter().any(unreadable));
        let bad_reserved = spec.reserved.as_ref().is_some_and(|r| [&r.cpu, &r.memory, &r.storage, &r.gpu].into_iter().any(|q| unreadable(q.as_ref())));
        if bad_capacity || bad_reserved {
            prop_assert_eq!(ready.status.as_str(), "False");
            prop_assert!(ready.message.contains("spec.capacity.") || ready.message.contains("spec.reserved."), "{}", ready.message);
        }
        for value in built.utilization.values() {
            prop_assert!(value.is_finite(), "utilization {value}");
        }
    }

    /// The Tenant status is always built, and an unreadable quota is `Ready=False` naming the
    /// quota field.
    #[test]
    fn tenant_status_never_panics(t in tenant(), home in any::<bool>(), used in any::<i64>(), systems in any::<u32>()) {
        let account = TenantAccount { used: Amounts { memory: i128::from(used), ..Amounts::default() }, systems, ..TenantAccount::default() };
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let built = suyun_operator::tenant::status(&t, home, &account, None, &now);
        let ready = built.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready is always set");
        let q = &t.spec.quota;
        for (field, value) in [("cpu", &q.cpu), ("memory", &q.memory), ("storage", &q.storage)] {
            if suyun_crds::quantity::milli(value).is_err() {
                prop_assert_eq!(ready.status.as_str(), "False");
                let named = format!("spec.quota.{field}");
                prop_assert!(ready.message.contains(&named), "{}", ready.message);
            }
        }
    }
}
