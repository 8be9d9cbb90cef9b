//! Tenant controller: dereference (the Tenant, its home node, its account) → build its
//! children and status (pure, [`build`] and [`status`]) → apply the children with server-side
//! apply (re-asserting them when changed by hand) → apply the status.

pub mod build;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use suyun_crds::conditions::{DesiredCondition, merge_conditions};
use suyun_crds::quantity;
use suyun_crds::v1alpha1::{
    CloudNode, MANAGED_BY, MANAGED_BY_LABEL, Tenant, TenantStatus, TenantUsage, condition_types,
};
use suyun_planner::model::Resources;
use tracing::{instrument, warn};

use crate::accounts::TenantAccount;
use crate::capacity::Amounts;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Reconciler;

/// A reason and sentence for a Tenant that is not Ready.
fn problem(reason: &str, message: String) -> (String, String) {
    (reason.to_owned(), message)
}

/// The tenant's quota in thousandths, or a problem per field that does not parse (admission
/// refuses most of them; a quantity the operator cannot represent exactly gets here).
fn quota_amounts(tenant: &Tenant) -> (Amounts, Vec<(String, String)>) {
    let q = &tenant.spec.quota;
    let mut problems = Vec::new();
    let mut parse = |field: &str, v: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        quantity::milli(v).unwrap_or_else(|e| {
            problems.push(problem("InvalidQuantity", format!("spec.quota.{field}: {e}")));
            0
        })
    };
    let amounts = Amounts {
        cpu: parse("cpu", &q.cpu),
        memory: parse("memory", &q.memory),
        storage: parse("storage", &q.storage),
        gpu: 0,
    };
    (amounts, problems)
}

/// Builds the status a Tenant should have. Pure. `provisioning` is why applying its children
/// failed, if it did.
pub fn status(
    tenant: &Tenant,
    home_exists: bool,
    account: &TenantAccount,
    provisioning: Option<&str>,
    now: &Time,
) -> TenantStatus {
    let previous = tenant.status.clone().unwrap_or_default();
    let (quota, mut problems) = quota_amounts(tenant);
    if !home_exists {
        problems.insert(
            0,
            problem(
                "HomeNodeNotFound",
                format!(
                    "spec.homeNode names CloudNode {:?}, which does not exist; its systems cannot be placed",
                    tenant.spec.home_node
                ),
            ),
        );
    }
    if let Some(why) = provisioning {
        problems.push(problem("ProvisioningFailed", why.to_owned()));
    }
    let ready = match problems.first() {
        Some((reason, _)) => DesiredCondition::new(
            condition_types::READY,
            false,
            reason.clone(),
            problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
        ),
        None => DesiredCondition::new(
            condition_types::READY,
            true,
            "Provisioned",
            format!("Namespace {} provisioned", tenant.name_any()),
        ),
    };
    let q = &tenant.spec.quota;
    let used = account.used;
    // What it borrows within its city is allowed on top of its quota.
    let borrowed = account.lending.as_ref().map(|l| l.borrowed).unwrap_or_default();
    let limit = |q: i128, extra: u64, milli_per_unit: i128| q + i128::from(extra) * milli_per_unit;
    let mut over: Vec<String> = [
        ("cpu", used.cpu, limit(quota.cpu, borrowed.cpu, 1)),
        ("memory", used.memory, limit(quota.memory, borrowed.memory, 1000)),
        ("storage", used.storage, limit(quota.storage, borrowed.storage, 1000)),
    ]
    .into_iter()
    .filter(|(_, u, l)| u > l)
    .map(|(r, _, _)| format!("{r} above quota"))
    .collect();
    if account.systems > q.max_systems {
        over.push(format!("{} systems, above maxSystems {}", account.systems, q.max_systems));
    }
    if account.quota_blocked > 0 {
        over.push(format!("{} systems blocked on the quota", account.quota_blocked));
    }
    let exceeded = if over.is_empty() {
        DesiredCondition::new("QuotaExceeded", false, "WithinQuota", "placed systems fit the quota")
    } else {
        DesiredCondition::new("QuotaExceeded", true, "QuotaExceeded", over.join("; "))
    };
    TenantStatus {
        observed_generation: tenant.metadata.generation,
        namespace: Some(tenant.name_any()),
        used: Some(TenantUsage {
            cpu: Some(quantity::format_cpu(used.cpu)),
            memory: Some(quantity::format_bytes(used.memory)),
            storage: Some(quantity::format_bytes(used.storage)),
            systems: account.systems,
            lent: account.lending.as_ref().map(|l| crate::migration::governance::amounts(l.lent)),
            borrowed: account.lending.as_ref().map(|l| crate::migration::governance::amounts(l.borrowed)),
        }),
        conditions: merge_conditions(&previous.conditions, vec![ready, exceeded], tenant.metadata.generation, now),
    }
}

/// Server-side applies `object` through `api` with the operator's field manager, forcing
/// ownership so that a hand edit is reverted; skipped when `live` (the cluster's copy, from the
/// cache) already holds every field `object` sets, so that a restart with nothing changed
/// writes nothing. Returns whether it applied.
async fn apply<K>(api: Api<K>, object: &K, live: &Store<K>) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = object.meta().name.clone().ok_or(Error::MissingField("metadata.name"))?;
    let mut value = serde_json::to_value(object).map_err(|_| Error::MissingField("serialisable object"))?;
    value["apiVersion"] = json!(K::api_version(&()));
    value["kind"] = json!(K::kind(&()));
    let key = ObjectRef::new(&name);
    let key = match object.meta().namespace.as_deref() {
        Some(ns) => key.within(ns),
        None => key,
    };
    if let Some(current) = live.get(&key)
        && serde_json::to_value(current.as_ref()).is_ok_and(|current| covers(&current, &value))
    {
        return Ok(false);
    }
    api.patch(&name, &PatchParams::apply(suyun_crds::FIELD_MANAGER).force(), &Patch::Apply(&value)).await.map_err(
        |source| {
            let child = match object.meta().namespace.as_deref() {
                Some(ns) => format!("{} {name} in Namespace {ns}", K::kind(&())),
                None => format!("{} {name}", K::kind(&())),
            };
            Error::Apply { child, source }
        },
    )?;
    Ok(true)
}

/// Whether `live` holds every field `desired` sets, with the same value (maps may hold more
/// keys; lists must match item by item).
fn covers(live: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired
            .iter()
            .all(|(k, v)| live.get(k).is_some_and(|l| covers(l, v)) || (v.is_null() && !live.contains_key(k))),
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| covers(l, d))
        }
        (Value::String(live), Value::String(desired)) => live == desired || same_quantity(live, desired),
        (live, desired) => live == desired,
    }
}

/// Whether two strings are one quantity written two ways: the apiserver stores a ResourceQuota's
/// or a LimitRange's amounts in canonical form (`100000` becomes `100k`). Only when one of them
/// has a suffix or an exponent: plain digits are compared as text (a label `01` is not `1`).
fn same_quantity(live: &str, desired: &str) -> bool {
    let suffixed = |s: &str| s.bytes().any(|b| !b.is_ascii_digit());
    (suffixed(live) || suffixed(desired))
        && matches!(
            (quantity::parse_milli(live), quantity::parse_milli(desired)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// The tenants' children as the cluster holds them (only the operator's, by label): what
/// [`apply`] compares with before it writes.
#[derive(Clone)]
pub struct Children {
    /// Namespaces.
    pub namespaces: Store<Namespace>,
    quotas: Store<ResourceQuota>,
    limits: Store<LimitRange>,
    policies: Store<NetworkPolicy>,
    bindings: Store<RoleBinding>,
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children").field("namespaces", &self.namespaces.len()).finish_non_exhaustive()
    }
}

/// The watches behind [`Children`], as streams the Controller's triggers read: a reflector
/// applies each event to its cache before it yields it, so a reconcile triggered by a child's
/// change always finds that change in the cache (two separate watches could not promise that).
type ChildStream<K> = std::pin::Pin<Box<dyn Stream<Item = std::result::Result<K, watcher::Error>> + Send>>;

impl Children {
    /// The caches and the watch streams that fill them (poll the streams, or nothing arrives).
    #[allow(clippy::type_complexity)]
    fn watch(
        client: &kube::Client,
    ) -> (
        Children,
        (
            ChildStream<Namespace>,
            ChildStream<ResourceQuota>,
            ChildStream<LimitRange>,
            ChildStream<NetworkPolicy>,
            ChildStream<RoleBinding>,
        ),
    ) {
        fn cache<K>(api: Api<K>) -> (Store<K>, ChildStream<K>)
        where
            K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
        {
            use kube::runtime::WatchStreamExt;
            let (store, writer) = kube::runtime::reflector::store();
            let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
            let stream = kube::runtime::reflector(writer, watcher(api, config).default_backoff()).touched_objects();
            (store, Box::pin(stream))
        }
        let (namespaces, a) = cache(Api::all(client.clone()));
        let (quotas, b) = cache(Api::all(client.clone()));
        let (limits, c) = cache(Api::all(client.clone()));
        let (policies, d) = cache(Api::all(client.clone()));
        let (bindings, e) = cache(Api::all(client.clone()));
        (Children { namespaces, quotas, limits, policies, bindings }, (a, b, c, d, e))
    }

    /// The caches of a member cluster's children, filled by tasks of their own (dropping the
    /// handles stops them); `on_change` is called on every change after the first list.
    pub fn watch_in_member(
        client: &kube::Client,
        on_change: impl Fn() + Clone + Send + 'static,
    ) -> (Children, Vec<tokio_util::task::AbortOnDropHandle<()>>) {
        fn drive<K: Send + 'static>(
            stream: ChildStream<K>,
            on_change: impl Fn() + Send + 'static,
        ) -> tokio_util::task::AbortOnDropHandle<()> {
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                let mut stream = stream;
                while let Some(item) = stream.next().await {
                    if item.is_ok() {
                        on_change();
                    }
                }
            }))
        }
        let (children, (a, b, c, d, e)) = Children::watch(client);
        let o = on_change;
        let tasks =
            vec![drive(a, o.clone()), drive(b, o.clone()), drive(c, o.clone()), drive(d, o.clone()), drive(e, o)];
        (children, tasks)
    }

    /// Whether every cache holds its first complete list, now.
    pub async fn listed(&self) -> bool {
        let ready = futures::future::join_all([
            crate::migration::cache_ready_now(&self.namespaces).boxed(),
            crate::migration::cache_ready_now(&self.quotas).boxed(),
            crate::migration::cache_ready_now(&self.limits).boxed(),
            crate::migration::cache_ready_now(&self.policies).boxed(),
            crate::migration::cache_ready_now(&self.bindings).boxed(),
        ]);
        ready.await.into_iter().all(|r| r)
    }

    /// Waits until every cache holds its first complete list.
    async fn ready(&self) {
        let _ = futures::join!(
            crate::migration::cache_ready(&self.namespaces),
            crate::migration::cache_ready(&self.quotas),
            crate::migration::cache_ready(&self.limits),
            crate::migration::cache_ready(&self.policies),
            crate::migration::cache_ready(&self.bindings),
        );
    }
}

/// Reconciles one Tenant and counts it in the reconcile metrics; a Tenant backing off after
/// failures waits for its delay (see [`crate::backoff`]).
async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>, children: Children) -> Result<Action> {
    let work = reconcile_tenant(tenant.clone(), &ctx, &children);
    crate::backoff::reconcile_with_backoff(tenant.clone(), &ctx, Reconciler::Tenant, work).await
}

#[instrument(skip_all, fields(tenant = %tenant.name_any()))]
async fn reconcile_tenant(tenant: Arc<Tenant>, ctx: &Context, children: &Children) -> Result<Action> {
    let name = tenant.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    if tenant.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // build + apply the children; a refusal is shown in the status before it is retried.
    let borrowed = borrowed_by(ctx, &name);
    let provisioned = match provision(&tenant, borrowed, &name, ctx.client.clone(), children, true).await {
        Ok(()) => provision_members(&tenant, &name, ctx).await,
        Err(e) => Err(e),
    };
    // status
    let home_exists = ctx.cloud_nodes.get(&ObjectRef::new(&tenant.spec.home_node)).is_some();
    // Until the migration loop computed the accounts, `used` would read zero: the children are
    // provisioned, the status waits (the accounts' arrival reconciles every Tenant).
    let Some(accounts) = ctx.accounts() else {
        provisioned?;
        return Ok(Action::await_change());
    };
    let account = accounts.tenants.get(&name).cloned().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let failure = provisioned.as_ref().err().map(ToString::to_string);
    let desired = status(&tenant, home_exists, &account, failure.as_deref(), &now);
    let previous = tenant.status.clone().unwrap_or_default();
    if desired != previous {
        let was_ready = previous
            .conditions
            .iter()
            .find(|c| c.type_ == condition_types::READY)
            .map(|c| (c.status.clone(), c.reason.clone()));
        let ready = desired.conditions.iter().find(|c| c.type_ == condition_types::READY).cloned();
        if !ctx.apply_status::<Tenant>(&name, tenant.metadata.resource_version.as_deref(), &desired).await? {
            provisioned?;
            return Ok(Action::requeue(crate::cloud_node::CHANGED_MEANWHILE));
        }
        if let Some(c) = ready.filter(|c| Some((c.status.clone(), c.reason.clone())) != was_ready) {
            let event = Event {
                type_: if c.status == "True" { EventType::Normal } else { EventType::Warning },
                reason: c.reason,
                note: Some(c.message),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &tenant.object_ref(&())).await {
                warn!(error = %e, "could not publish Event");
            }
        }
    }
    provisioned?;
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// What the tenant borrows from its city's other departments (the plan's), which its
/// Namespace's ResourceQuota allows on top of its own quota.
fn borrowed_by(ctx: &Context, name: &str) -> Resources {
    ctx.accounts()
        .and_then(|a| a.tenants.get(name).and_then(|t| t.lending.as_ref().map(|l| l.borrowed)))
        .unwrap_or_default()
}

/// Applies the tenant's children that differ from the cluster's: the Namespace first, the
/// rest live in it. In a member cluster (`owned` false) they carry no owner reference: their
/// owner, the Tenant, lives in the management cluster, and a member's garbage collector would
/// take the reference for one to a missing owner (the sweep removes them instead).
async fn provision(
    tenant: &Tenant,
    borrowed: Resources,
    name: &str,
    client: kube::Client,
    live: &Children,
    owned: bool,
) -> Result<()> {
    fn owner<K: Resource>(mut object: K, owned: bool) -> K {
        if !owned {
            object.meta_mut().owner_references = None;
        }
        object
    }
    apply(Api::<Namespace>::all(client.clone()), &owner(build::namespace(tenant), owned), &live.namespaces).await?;
    apply(Api::namespaced(client.clone(), name), &owner(build::resource_quota(tenant, borrowed), owned), &live.quotas)
        .await?;
    apply(Api::namespaced(client.clone(), name), &owner(build::limit_range(tenant), owned), &live.limits).await?;
    apply(Api::namespaced(client.clone(), name), &owner(build::network_policy(tenant), owned), &live.policies).await?;
    apply(Api::namespaced(client.clone(), name), &owner(build::role_binding(tenant), owned), &live.bindings).await?;
    Ok(())
}

/// The member-backed nodes whose clusters must hold the tenant's children: its home node and
/// every node its systems hold capacity on or are planned onto.
pub fn member_nodes(
    tenant: &Tenant,
    account: Option<&TenantAccount>,
    members: &crate::members::Registry,
) -> Vec<String> {
    let mut nodes: std::collections::BTreeSet<String> = account.map(|a| a.nodes.clone()).unwrap_or_default();
    nodes.insert(tenant.spec.home_node.clone());
    nodes.into_iter().filter(|n| members.get(n).is_some()).collect()
}

/// Provisions the tenant's children in the member clusters that must hold them
/// ([`member_nodes`]). A member that cannot be reached now is skipped (its return reconciles
/// every Tenant); a refusal there fails the reconcile like one here, naming the member.
async fn provision_members(tenant: &Tenant, name: &str, ctx: &Context) -> Result<()> {
    let accounts = ctx.accounts();
    let account = accounts.as_ref().and_then(|a| a.tenants.get(name));
    for node in member_nodes(tenant, account, &ctx.members) {
        let Some(view) = ctx.members.get(&node) else { continue };
        let (Some(client), Some(caches)) = (view.client.clone(), view.caches.as_ref()) else { continue };
        if !view.reachable() || !caches.children.listed().await {
            tracing::debug!(cloud_node = %node, "member not reachable or not listed yet: its children wait");
            continue;
        }
        provision(tenant, borrowed_by(ctx, name), name, client, &caches.children, false).await.map_err(
            |e| match e {
                Error::Apply { child, source } => {
                    Error::Apply { child: format!("{child} in the member cluster of {node}"), source }
                }
                other => other,
            },
        )?;
    }
    Ok(())
}

/// How often the member clusters are swept for tenant Namespaces no longer needed.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Deletes, in every reachable member cluster, the tenants' Namespaces (the operator's, by
/// label) that no tenant needs there any more ([`member_nodes`]: the tenant is gone, or none of
/// its systems is placed there and it is not its home) — never one that still holds a Pod that
/// has not finished or one of the operator's Jobs that has not finished. Returns the Namespaces
/// deleted, as `node/namespace`.
pub async fn sweep_members(ctx: &Context) -> Vec<String> {
    let Some(accounts) = ctx.accounts() else { return Vec::new() };
    let tenants = ctx.tenants.state();
    let mut deleted = Vec::new();
    for (node, view) in ctx.members.all() {
        let (Some(client), Some(caches)) = (view.client.clone(), view.caches.as_ref()) else { continue };
        if !view.reachable() || !caches.children.listed().await {
            continue;
        }
        let needed: std::collections::HashSet<String> = tenants
            .iter()
            .filter(|t| member_nodes(t, accounts.tenants.get(&t.name_any()), &ctx.members).contains(&node))
            .map(|t| t.name_any())
            .collect();
        for namespace in caches.children.namespaces.state() {
            let ns = namespace.name_any();
            if needed.contains(&ns) || namespace.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let busy_pods = caches.pods.state().iter().any(|p| {
                p.namespace().as_deref() == Some(ns.as_str())
                    && !p
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.as_deref())
                        .is_some_and(|p| p == "Succeeded" || p == "Failed")
            });
            let busy_jobs = caches.jobs.state().iter().any(|j| {
                j.namespace().as_deref() == Some(ns.as_str())
                    && crate::migration::jobs::state(Some(j)) == crate::migration::jobs::JobState::Running
            });
            if busy_pods || busy_jobs {
                tracing::info!(cloud_node = %node, namespace = %ns, "tenant Namespace no longer needed in the member but still running something: kept");
                continue;
            }
            match Api::<Namespace>::all(client.clone()).delete(&ns, &Default::default()).await {
                Ok(_) => {
                    tracing::info!(cloud_node = %node, namespace = %ns, "tenant Namespace no longer needed in the member: deleted");
                    deleted.push(format!("{node}/{ns}"));
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    warn!(cloud_node = %node, namespace = %ns, error = %e, "could not delete a tenant Namespace no longer needed in the member")
                }
            }
        }
    }
    deleted
}

/// Runs the Tenant controller until `shutdown` resolves. Triggers: the Tenant, any of its
/// children changing (repaired when edited by hand), the accounts changing, and a CloudNode
/// appearing or going away (a tenant's home node).
pub async fn run(
    ctx: Arc<Context>,
    accounts_changed: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let sweeper = {
        let ctx = ctx.clone();
        let stop = shutdown.clone();
        async move {
            let sweep = async {
                loop {
                    tokio::time::sleep(SWEEP_EVERY).await;
                    if !ctx.members.is_empty() {
                        sweep_members(&ctx).await;
                    }
                }
            };
            tokio::select! {
                () = stop => {}
                () = sweep => {}
            }
        }
    };
    futures::future::join(controller(ctx, accounts_changed, shutdown), sweeper).await;
}

async fn controller(
    ctx: Arc<Context>,
    accounts_changed: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let tenants: Store<Tenant> = ctx.tenants.clone();
    let (children, (namespaces, quotas, limits, policies, bindings)) = Children::watch(&client);
    // The Controller polls the child streams; the caches fill as it does. A reconcile before
    // they are complete would find nothing and apply every child: wait for them first.
    let controller = Controller::new(Api::<Tenant>::all(client.clone()), watcher::Config::default())
        .owns_stream(namespaces)
        .owns_stream(quotas)
        .owns_stream(limits)
        .owns_stream(policies)
        .owns_stream(bindings);
    let controller = controller
        .watches(Api::<CloudNode>::all(client), watcher::Config::default(), move |node| {
            let name = node.name_any();
            tenants
                .state()
                .into_iter()
                .filter(|t| t.spec.home_node == name)
                .map(|t| ObjectRef::from_obj(t.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(accounts_changed)
        .graceful_shutdown_on(shutdown);
    controller
        .run(
            move |tenant, ctx| {
                let children = children.clone();
                async move {
                    children.ready().await;
                    reconcile(tenant, ctx, children).await
                }
            },
            crate::backoff::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Tenant reconcile failed");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Tenant {
        serde_yaml::from_str(
            r#"
apiVersion: suyun.io/v1alpha1
kind: Tenant
metadata: {name: t, generation: 3}
spec:
  displayName: 测试
  level: City
  regionCode: "320100"
  homeNode: nanjing
  quota: {cpu: "10", memory: 10Gi, storage: 1Ti, maxSystems: 2}
  securityLevel: 2
"#,
        )
        .unwrap()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn condition<'a>(s: &'a TenantStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_missing_home_node_is_not_ready_and_says_why() {
        let s = status(&tenant(), false, &TenantAccount::default(), None, &now());
        assert_eq!(condition(&s, "Ready"), ("False", "HomeNodeNotFound"));
        assert!(s.conditions[0].message.contains("\"nanjing\""));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn usage_and_quota_exceeded_follow_the_account() {
        let within = TenantAccount {
            used: Amounts { cpu: 4_000, ..Default::default() },
            systems: 2,
            quota_blocked: 0,
            ..Default::default()
        };
        let s = status(&tenant(), true, &within, None, &now());
        assert_eq!(condition(&s, "Ready"), ("True", "Provisioned"));
        assert_eq!(condition(&s, "QuotaExceeded"), ("False", "WithinQuota"));
        assert_eq!(s.used.as_ref().unwrap().cpu.as_ref().unwrap().0, "4");
        let blocked = TenantAccount { quota_blocked: 3, ..within };
        let s = status(&tenant(), true, &blocked, None, &now());
        assert_eq!(condition(&s, "QuotaExceeded"), ("True", "QuotaExceeded"));
        assert!(s.conditions[1].message.contains("3 systems blocked on the quota"));
    }

    #[test]
    fn a_quota_the_operator_cannot_represent_is_not_ready_and_names_the_field() {
        let mut t = tenant();
        t.spec.quota.memory = k8s_openapi::apimachinery::pkg::api::resource::Quantity("10E".into());
        let s = status(&t, true, &TenantAccount::default(), None, &now());
        assert_eq!(condition(&s, "Ready"), ("False", "InvalidQuantity"));
        assert!(s.conditions[0].message.contains("spec.quota.memory"), "{}", s.conditions[0].message);
    }

    #[test]
    fn a_refused_child_is_shown_with_every_other_problem() {
        let s = status(&tenant(), false, &TenantAccount::default(), Some("applying Namespace t: refused"), &now());
        assert_eq!(condition(&s, "Ready"), ("False", "HomeNodeNotFound"));
        assert!(s.conditions[0].message.contains("applying Namespace t: refused"), "{}", s.conditions[0].message);
        let s = status(&tenant(), true, &TenantAccount::default(), Some("applying Namespace t: refused"), &now());
        assert_eq!(condition(&s, "Ready"), ("False", "ProvisioningFailed"));
    }

    #[test]
    fn a_child_is_left_alone_only_when_the_cluster_holds_every_field_the_operator_sets() {
        let desired = json!({"metadata": {"name": "q", "labels": {"a": "1"}}, "spec": {"hard": {"cpu": "10"}}});
        let live = json!({
            "metadata": {"name": "q", "labels": {"a": "1", "kubernetes.io/metadata.name": "q"}, "uid": "u"},
            "spec": {"hard": {"cpu": "10"}}, "status": {"used": {"cpu": "1"}}
        });
        assert!(covers(&live, &desired), "fields the server adds do not matter");
        let edited = json!({"metadata": {"name": "q", "labels": {"a": "2"}}, "spec": {"hard": {"cpu": "10"}}});
        assert!(!covers(&edited, &desired), "a label edited by hand is put back");
        let missing = json!({"metadata": {"name": "q", "labels": {"a": "1"}}, "spec": {"hard": {}}});
        assert!(!covers(&missing, &desired), "a field removed by hand is put back");
        let list = json!({"rules": [{"ports": [53]}]});
        assert!(!covers(&json!({"rules": [{"ports": [53]}, {"ports": [80]}]}), &list), "an added rule is taken out");
        assert!(covers(&json!({"rules": [{"ports": [53], "protocol": "UDP"}]}), &list));
        let hard = |cpu: &str| json!({"spec": {"hard": {"requests.cpu": cpu}}});
        assert!(covers(&hard("100k"), &hard("100000")), "the apiserver's canonical form is the same amount");
        assert!(!covers(&hard("10k"), &hard("100000")), "another amount is not");
        assert!(!covers(&json!({"labels": {"n": "01"}}), &json!({"labels": {"n": "1"}})), "digits compare as text");
    }
}
