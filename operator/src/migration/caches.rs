//! The loop's caches: reflector stores of every GovSystem, MigrationWave, Tenant, CityBudget and
//! ResidencyPolicy and of the operator's Jobs; every change wakes the loop.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use suyun_crds::v1alpha1::{
    CityBudget, GovSystem, MANAGED_BY, MANAGED_BY_LABEL, MigrationWave, ResidencyPolicy, Tenant,
};
use tokio::sync::Notify;
use tracing::warn;

/// The caches the loop reads.
#[derive(Clone)]
pub struct Caches {
    /// Every GovSystem.
    pub systems: Store<GovSystem>,
    /// Every MigrationWave.
    pub waves: Store<MigrationWave>,
    /// Every Tenant.
    pub tenants: Store<Tenant>,
    /// Jobs the operator created.
    pub jobs: Store<Job>,
    /// Every CityBudget.
    pub city_budgets: Store<CityBudget>,
    /// Every ResidencyPolicy.
    pub residency_policies: Store<ResidencyPolicy>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

/// What a reflector cache can hold.
pub(crate) trait Cached:
    kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

impl<K> Cached for K where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

/// A reflector cache of `api` (managedFields dropped: they are a large share of each cached
/// object and nothing here reads them), filled by a task of its own that retries with `backoff`
/// and calls `on_change` on every change after the first list, and `failed` on a watch error.
pub(crate) fn spawn_cache<K: Cached>(
    api: Api<K>,
    config: watcher::Config,
    backoff: impl kube::runtime::utils::Backoff + 'static,
    on_change: impl Fn() + Send + 'static,
    failed: fn(&watcher::Error),
) -> (Store<K>, tokio::task::JoinHandle<()>) {
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, config).backoff(backoff).modify(|o| o.managed_fields_mut().clear()));
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => on_change(),
                Err(e) => failed(&e),
            }
        }
    });
    (store, task)
}

/// Starts the watches behind [`Caches`]; every change wakes the loop through `notify`.
pub fn watch(client: &kube::Client, notify: Arc<Notify>) -> (Caches, Vec<tokio::task::JoinHandle<()>>) {
    fn spawn<K: Cached>(
        api: Api<K>,
        config: watcher::Config,
        notify: Arc<Notify>,
    ) -> (Store<K>, tokio::task::JoinHandle<()>) {
        let failed = |e: &watcher::Error| warn!(error = %e, "watch failed; retrying with backoff");
        spawn_cache(api, config, watcher::DefaultBackoff::default(), move || notify.notify_one(), failed)
    }
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let (systems, a) = spawn(Api::<GovSystem>::all(client.clone()), watcher::Config::default(), notify.clone());
    let (waves, b) = spawn(Api::<MigrationWave>::all(client.clone()), watcher::Config::default(), notify.clone());
    let (tenants, c) = spawn(Api::<Tenant>::all(client.clone()), watcher::Config::default(), notify.clone());
    let (jobs, d) = spawn(Api::<Job>::all(client.clone()), managed, notify.clone());
    let (city_budgets, e) = spawn(Api::<CityBudget>::all(client.clone()), watcher::Config::default(), notify.clone());
    let (residency_policies, f) =
        spawn(Api::<ResidencyPolicy>::all(client.clone()), watcher::Config::default(), notify);
    (Caches { systems, waves, tenants, jobs, city_budgets, residency_policies }, vec![a, b, c, d, e, f])
}

/// Whether `store` holds its first complete list already (waits at most a moment).
pub(crate) async fn cache_ready_now<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(tokio::time::timeout(Duration::from_millis(10), store.wait_until_ready()).await, Ok(Ok(())))
}

/// Waits until `store` holds its first complete list; `false` when its writer was dropped first.
///
/// `Store::wait_until_ready` alone is not enough: kube's readiness signal is a oneshot receiver
/// with a single waker slot, so of several tasks waiting on the same store only the one that
/// polled last is woken. The CloudNode store is also awaited by its controller, the Tenant
/// store by the Tenant controller: a loop waiting there was seen stalled for a whole leadership
/// term (the chaos run). Polling again every 100 ms costs nothing and cannot miss it.
pub(crate) async fn cache_ready<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(ready) = tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
            return ready.is_ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;
    use suyun_crds::v1alpha1::CloudNode;

    /// A store awaited by two tasks, as the CloudNode store is by its controller and by the
    /// loop: the one that started waiting first must see it ready too. (With a bare
    /// `wait_until_ready` in `cache_ready`, this test hangs until its timeout.)
    #[tokio::test]
    async fn a_store_awaited_by_two_tasks_wakes_the_first_waiter_too() {
        let mut writer: Writer<CloudNode> = Writer::default();
        let store = writer.as_reader();
        let first = tokio::spawn({
            let store = store.clone();
            async move { super::cache_ready(&store).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The second waiter polls after the first: it takes the single waker slot.
        let second = tokio::spawn({
            let store = store.clone();
            async move { store.wait_until_ready().await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let waited = tokio::time::timeout(Duration::from_secs(5), async { (first.await, second.await) }).await;
        let (first, second) = waited.expect("both waiters see the store ready");
        assert!(first.unwrap() && second.unwrap());
    }
}
