//! Objects for the migration loop's unit tests: one node (南京), one tenant, one wave, and
//! systems by number.

use std::sync::Arc;

use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Tenant};

/// The tests' clock (Unix seconds).
pub const NOW: i64 = 1_800_000_000;

/// The node `nanjing`, at most `max_concurrent` migrations at once.
pub fn node(max_concurrent: u32) -> Arc<CloudNode> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "CloudNode", "metadata": {"name": "nanjing"},
            "spec": {"tier": "Provincial", "regionCode": "320000", "displayName": "南京", "securityLevel": 3,
                     "maxConcurrentMigrations": max_concurrent,
                     "capacity": {"cpu": "1000", "memory": "10Ti", "storage": "100Ti"}}
        }))
        .unwrap(),
    )
}

/// The tenant `nj-data` (region 320100) on `nanjing`.
pub fn tenant() -> Arc<Tenant> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "nj-data"},
            "spec": {"displayName": "南京市大数据局", "level": "City", "regionCode": "320100",
                     "homeNode": "nanjing", "securityLevel": 3,
                     "quota": {"cpu": "500", "memory": "5Ti", "storage": "50Ti", "maxSystems": 100}}
        }))
        .unwrap(),
    )
}

/// The wave `w1`, selecting every system, Simulated.
pub fn wave(max_concurrent: u32) -> Arc<MigrationWave> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "MigrationWave", "metadata": {"name": "w1"},
            "spec": {"order": 1, "selector": {}, "maxConcurrent": max_concurrent, "executor": "Simulated"}
        }))
        .unwrap(),
    )
}

/// System `s{n}` (`JS-320100-{n:04}`) of `nj-data`.
pub fn system(n: usize, priority: u32, depends_on: &[&str]) -> Arc<GovSystem> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "GovSystem",
            "metadata": {"name": format!("s{n}"), "namespace": "nj-data", "uid": format!("uid-{n}"),
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"systemId": format!("JS-320100-{n:04}"), "displayName": format!("系统{n}"),
                     "classification": "Internal", "securityLevel": 2, "priority": priority,
                     "resources": {"cpu": "1", "memory": "1Gi", "storage": "1Gi"},
                     "dependsOn": depends_on}
        }))
        .unwrap(),
    )
}
