//! The synthetic datasets of `suyun_planner::synthetic` as Kubernetes objects, for the
//! benchmarks that run the operator at the Jiangsu scale.

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use suyun_crds::v1alpha1::{CloudNode, GovSystem, Tenant};
use suyun_planner::model;

use anyhow::Context as _;

/// Field manager of the objects the benchmarks create.
pub const MANAGER: &str = "suyun-bench";

fn typed<K: serde::de::DeserializeOwned>(value: Value) -> anyhow::Result<K> {
    serde_json::from_value(value).context("building an object")
}

fn resources(r: &model::Resources) -> Value {
    let mut v =
        json!({ "cpu": format!("{}m", r.cpu), "memory": r.memory.to_string(), "storage": r.storage.to_string() });
    if r.gpu > 0 {
        v["gpu"] = json!(r.gpu.to_string());
    }
    v
}

/// A CloudNode for a synthetic node (its allocatable as fixed capacity).
pub fn cloud_node(n: &model::Node) -> anyhow::Result<CloudNode> {
    typed(json!({
        "apiVersion": "suyun.io/v1alpha1",
        "kind": "CloudNode",
        "metadata": { "name": n.name },
        "spec": {
            "tier": n.tier,
            "regionCode": n.region_code,
            "displayName": n.display_name,
            "parent": n.parent,
            "capacity": resources(&n.allocatable),
            "securityLevel": n.security_level,
            "architectures": n.architectures,
            "maxConcurrentMigrations": n.max_concurrent_migrations,
            "migrationBandwidthMbps": n.migration_bandwidth_mbps,
            "cordoned": n.cordoned,
        }
    }))
}

/// A Tenant for a synthetic tenant.
pub fn tenant(t: &model::Tenant) -> anyhow::Result<Tenant> {
    typed(json!({
        "apiVersion": "suyun.io/v1alpha1",
        "kind": "Tenant",
        "metadata": { "name": t.name },
        "spec": {
            "displayName": t.display_name,
            "level": t.level,
            "regionCode": t.region_code,
            "homeNode": t.home_node,
            "quota": {
                "cpu": format!("{}m", t.quota.cpu),
                "memory": t.quota.memory.to_string(),
                "storage": t.quota.storage.to_string(),
                "maxSystems": t.quota.max_systems.min(100_000),
            },
            "owners": [{ "kind": "Group", "name": format!("{}-admins", t.name) }],
            "securityLevel": t.security_level,
        }
    }))
}

/// A GovSystem for a synthetic system, labelled `suyun.io/wave: <wave>` when it has one.
pub fn system(s: &model::System) -> anyhow::Result<GovSystem> {
    let classification = match s.security_level {
        1 => "Public",
        2 => "Internal",
        _ => "Sensitive",
    };
    let mut spec = json!({
        "systemId": s.system_id,
        "displayName": s.display_name,
        "classification": classification,
        "securityLevel": s.security_level,
        "architecture": s.architecture,
        "resources": resources(&s.resources),
        "priority": s.priority,
        "strategy": s.strategy,
    });
    if s.data_volume > 0 {
        spec["dataVolume"] = json!(s.data_volume.to_string());
    }
    for (field, list) in
        [("dependsOn", &s.depends_on), ("sameNodeAs", &s.same_node_as), ("antiAffinityWith", &s.anti_affinity_with)]
    {
        if !list.is_empty() {
            spec[field] = json!(list);
        }
    }
    let p = &s.placement;
    if p.preferred_node.is_some() || !p.allowed_nodes.is_empty() || p.allow_spillover {
        spec["placement"] = json!({
            "preferredNode": p.preferred_node,
            "allowedNodes": p.allowed_nodes,
            "allowSpillover": p.allow_spillover,
        });
    }
    let mut metadata = json!({ "name": s.name, "namespace": s.tenant });
    if let Some(wave) = &s.wave {
        metadata["labels"] = json!({ "suyun.io/wave": wave });
    }
    typed(json!({ "apiVersion": "suyun.io/v1alpha1", "kind": "GovSystem", "metadata": metadata, "spec": spec }))
}

/// Creates every object with `concurrency` requests in flight; returns the failures
/// (`<name>: <error>`).
pub async fn create_all<K>(api_of: impl Fn(&K) -> Api<K>, objects: Vec<K>, concurrency: usize) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    futures::stream::iter(objects)
        .map(|o| {
            let api = api_of(&o);
            let pp = pp.clone();
            async move { api.create(&pp, &o).await.err().map(|e| format!("{}: {e}", o.name_any())) }
        })
        .buffer_unordered(concurrency)
        .filter_map(|r| async move { r })
        .collect()
        .await
}
