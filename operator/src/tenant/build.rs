//! The objects a Tenant owns in the cluster, built purely from its spec: the Namespace named
//! after it, a ResourceQuota from its quota, a LimitRange, a default-deny NetworkPolicy that
//! lets the tenant's own pods (and DNS) through, and a RoleBinding of its owners to the
//! `suyun-tenant-admin` ClusterRole.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use suyun_crds::quantity;
use suyun_crds::v1alpha1::{MANAGED_BY, MANAGED_BY_LABEL, OwnerKind, Tenant};
use suyun_planner::model::Resources;

/// Label on a tenant's Namespace and children: the Tenant's name.
pub const TENANT_LABEL: &str = "suyun.io/tenant";
/// Label on a tenant's Namespace: its region code.
pub const REGION_LABEL: &str = "suyun.io/region-code";
/// Label on a tenant's Namespace: its level.
pub const LEVEL_LABEL: &str = "suyun.io/level";
/// The ClusterRole the owners are bound to in their Namespace.
pub const TENANT_ADMIN_ROLE: &str = "suyun-tenant-admin";

/// Name of the ResourceQuota, LimitRange, NetworkPolicy and RoleBinding in the Namespace.
pub const QUOTA_NAME: &str = "suyun-quota";
/// Name of the LimitRange.
pub const LIMITS_NAME: &str = "suyun-limits";
/// Name of the NetworkPolicy.
pub const POLICY_NAME: &str = "suyun-default-deny";
/// Name of the RoleBinding.
pub const BINDING_NAME: &str = "suyun-tenant-admin";

fn labels(tenant: &Tenant) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (TENANT_LABEL.to_owned(), tenant.name_any()),
        (REGION_LABEL.to_owned(), tenant.spec.region_code.clone()),
        (LEVEL_LABEL.to_owned(), tenant.spec.level.as_str().to_owned()),
    ])
}

fn meta(tenant: &Tenant, name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(tenant)),
        owner_references: tenant.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}

/// The tenant's Namespace.
pub fn namespace(tenant: &Tenant) -> Namespace {
    let mut m = meta(tenant, &tenant.name_any(), None);
    m.annotations = Some(BTreeMap::from([("suyun.io/display-name".to_owned(), tenant.spec.display_name.clone())]));
    Namespace { metadata: m, ..Default::default() }
}

/// The ResourceQuota: the tenant's cpu, memory and storage quota, plus what it borrows from its
/// city's other departments (the plan places its systems on that too), as pod requests and
/// limits.
pub fn resource_quota(tenant: &Tenant, borrowed: Resources) -> ResourceQuota {
    let q = &tenant.spec.quota;
    let plus = |quota: &Quantity, extra: u64, milli_per_unit: i128, cpu: bool| {
        if extra == 0 {
            return quota.clone();
        }
        match quantity::milli(quota) {
            Ok(m) if cpu => quantity::format_cpu(m + i128::from(extra) * milli_per_unit),
            Ok(m) => quantity::format_bytes(m + i128::from(extra) * milli_per_unit),
            Err(_) => quota.clone(),
        }
    };
    let cpu = plus(&q.cpu, borrowed.cpu, 1, true);
    let memory = plus(&q.memory, borrowed.memory, 1000, false);
    let hard = BTreeMap::from([
        ("requests.cpu".to_owned(), cpu.clone()),
        ("limits.cpu".to_owned(), cpu),
        ("requests.memory".to_owned(), memory.clone()),
        ("limits.memory".to_owned(), memory),
        ("requests.storage".to_owned(), plus(&q.storage, borrowed.storage, 1000, false)),
    ]);
    ResourceQuota {
        metadata: meta(tenant, QUOTA_NAME, Some(&tenant.name_any())),
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..Default::default() }),
        status: None,
    }
}

/// The LimitRange: defaults so that pods without requests still count against the quota.
pub fn limit_range(tenant: &Tenant) -> LimitRange {
    let q = |s: &str| Quantity(s.to_owned());
    LimitRange {
        metadata: meta(tenant, LIMITS_NAME, Some(&tenant.name_any())),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(BTreeMap::from([("cpu".into(), q("100m")), ("memory".into(), q("128Mi"))])),
                default: Some(BTreeMap::from([("cpu".into(), q("1")), ("memory".into(), q("1Gi"))])),
                ..Default::default()
            }],
        }),
    }
}

/// The NetworkPolicy: deny by default; allow traffic between the tenant's own pods, and DNS.
pub fn network_policy(tenant: &Tenant) -> NetworkPolicy {
    let same_tenant = NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..Default::default() };
    let dns_port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    let dns = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".into(), "kube-system".into())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    NetworkPolicy {
        metadata: meta(tenant, POLICY_NAME, Some(&tenant.name_any())),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule { from: Some(vec![same_tenant.clone()]), ports: None }]),
            egress: Some(vec![
                NetworkPolicyEgressRule { to: Some(vec![same_tenant]), ports: None },
                NetworkPolicyEgressRule { to: Some(vec![dns]), ports: Some(vec![dns_port("UDP"), dns_port("TCP")]) },
            ]),
        }),
    }
}

/// The RoleBinding of the owners to `suyun-tenant-admin` in the tenant's Namespace.
pub fn role_binding(tenant: &Tenant) -> RoleBinding {
    let subjects = tenant
        .spec
        .owners
        .iter()
        .map(|o| Subject {
            kind: match o.kind {
                OwnerKind::User => "User".into(),
                OwnerKind::Group => "Group".into(),
            },
            name: o.name.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        })
        .collect::<Vec<_>>();
    RoleBinding {
        metadata: meta(tenant, BINDING_NAME, Some(&tenant.name_any())),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: TENANT_ADMIN_ROLE.into(),
        },
        subjects: (!subjects.is_empty()).then_some(subjects),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Tenant {
        let mut t: Tenant = serde_yaml::from_str(
            r#"
apiVersion: suyun.io/v1alpha1
kind: Tenant
metadata: {name: nanjing-data, uid: u-1}
spec:
  displayName: 南京市数据局
  level: City
  regionCode: "320100"
  homeNode: nanjing
  quota: {cpu: "200", memory: 800Gi, storage: 100Ti, maxSystems: 30}
  owners: [{kind: Group, name: nanjing-admins}, {kind: User, name: ops@nanjing.gov.cn}]
  securityLevel: 3
"#,
        )
        .unwrap();
        t.metadata.uid = Some("u-1".into());
        t
    }

    #[test]
    fn every_child_is_owned_by_the_tenant_and_labelled() {
        let t = tenant();
        let metas = [
            namespace(&t).metadata,
            resource_quota(&t, Resources::default()).metadata,
            limit_range(&t).metadata,
            network_policy(&t).metadata,
            role_binding(&t).metadata,
        ];
        for m in metas {
            let owner = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str(), owner.controller),
                ("Tenant", "nanjing-data", Some(true))
            );
            assert_eq!(m.labels.as_ref().unwrap()[REGION_LABEL], "320100");
            assert_ne!(m.namespace.as_deref(), Some("default"));
        }
        assert_eq!(namespace(&t).metadata.annotations.unwrap()["suyun.io/display-name"], "南京市数据局");
    }

    #[test]
    fn quota_follows_the_tenant_quota() {
        let hard = resource_quota(&tenant(), Resources::default()).spec.unwrap().hard.unwrap();
        assert_eq!(hard["requests.cpu"].0, "200");
        assert_eq!(hard["limits.memory"].0, "800Gi");
        assert_eq!(hard["requests.storage"].0, "100Ti");
    }

    #[test]
    fn the_policy_denies_by_default_and_allows_the_tenant_itself() {
        let spec = network_policy(&tenant()).spec.unwrap();
        assert_eq!(spec.pod_selector, Some(LabelSelector::default()), "applies to every pod");
        assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
        let from = &spec.ingress.unwrap()[0].from.clone().unwrap()[0];
        assert!(from.namespace_selector.is_none(), "only pods of the same Namespace");
    }

    #[test]
    fn owners_are_bound_to_the_tenant_admin_role() {
        let rb = role_binding(&tenant());
        assert_eq!(rb.role_ref.name, TENANT_ADMIN_ROLE);
        let subjects = rb.subjects.unwrap();
        assert_eq!(subjects.len(), 2);
        assert_eq!((subjects[0].kind.as_str(), subjects[0].name.as_str()), ("Group", "nanjing-admins"));
    }
}
