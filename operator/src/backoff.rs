//! Per-object exponential backoff for the reconcile errors of the CloudNode and Tenant
//! controllers: an object whose reconcile keeps failing (an apiserver that refuses its
//! children, a Namespace being deleted) is retried after 1 s, 2 s, 4 s, … up to 5 minutes,
//! and starts again from 1 s after its first success. Each object counts its own failures, so
//! one failing object never slows the others down, and the controllers keep reconciling them
//! meanwhile (kube-runtime runs reconciles of different objects concurrently).
//!
//! The delay holds whatever triggers the object meanwhile (a sibling's change, new accounts,
//! its own status write): only a change of its spec (a new `metadata.generation`) is tried at
//! once, since that may be the fix.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;

/// First retry delay after a failed reconcile.
pub const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay after repeated failures.
pub const ERROR_BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Failure counts by object, and the delays they imply.
#[derive(Debug)]
pub struct ErrorBackoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<ObjectRef<DynamicObject>, Failing>>,
}

/// An object's consecutive failures and when it may be tried again.
#[derive(Debug)]
struct Failing {
    count: u32,
    retry_at: Instant,
    generation: Option<i64>,
}

impl Default for ErrorBackoff {
    fn default() -> Self {
        Self::new(ERROR_BACKOFF_BASE, ERROR_BACKOFF_CAP)
    }
}

impl ErrorBackoff {
    /// A backoff that waits `base` after the first failure, doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap, failures: Mutex::default() }
    }

    /// The delay after the `failures`-th consecutive failure (1 for the first): `base × 2^(n−1)`,
    /// at most `cap`. Pure.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// Records one more failure of `object` and returns how long to wait before retrying it.
    pub fn failed<K: Resource<DynamicType = ()>>(&self, object: &K) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock is never poisoned");
        let entry = failures.entry(ObjectRef::from_obj(object).erase()).or_insert(Failing {
            count: 0,
            retry_at: Instant::now(),
            generation: None,
        });
        entry.count = entry.count.saturating_add(1);
        let delay = self.delay(entry.count);
        entry.retry_at = Instant::now() + delay;
        entry.generation = object.meta().generation;
        delay
    }

    /// How long `object` must still wait before its next attempt, if it is backing off and its
    /// spec did not change since it last failed.
    pub fn hold<K: Resource<DynamicType = ()>>(&self, object: &K) -> Option<Duration> {
        let failures = self.failures.lock().expect("backoff lock is never poisoned");
        let entry = failures.get(&ObjectRef::from_obj(object).erase())?;
        let wait = entry.retry_at.checked_duration_since(Instant::now())?;
        (entry.generation == object.meta().generation && !wait.is_zero()).then_some(wait)
    }

    /// Forgets the failures of `object` after a successful reconcile (or its deletion).
    pub fn succeeded<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.failures.lock().expect("backoff lock is never poisoned").remove(&ObjectRef::from_obj(object).erase());
    }

    /// Consecutive failures recorded for `object`.
    pub fn failures<K: Resource<DynamicType = ()>>(&self, object: &K) -> u32 {
        let failures = self.failures.lock().expect("backoff lock is never poisoned");
        failures.get(&ObjectRef::from_obj(object).erase()).map_or(0, |f| f.count)
    }
}

/// Runs one reconcile of a CloudNode or Tenant controller: an object backing off after failures
/// waits for its delay; otherwise `reconcile` runs, timed and counted in the reconcile metrics,
/// and a success forgets the object's failures.
pub async fn reconcile_with_backoff<K, F>(
    object: std::sync::Arc<K>,
    ctx: &crate::context::Context,
    controller: crate::metrics::Reconciler,
    reconcile: F,
) -> crate::error::Result<kube::runtime::controller::Action>
where
    K: Resource<DynamicType = ()>,
    F: std::future::Future<Output = crate::error::Result<kube::runtime::controller::Action>>,
{
    if let Some(wait) = ctx.error_backoff.hold(object.as_ref()) {
        return Ok(kube::runtime::controller::Action::requeue(wait));
    }
    let timer = ctx.metrics.time_reconcile(controller);
    let result = reconcile.await;
    timer.observe(result.is_err());
    if result.is_ok() {
        ctx.error_backoff.succeeded(object.as_ref());
    }
    result
}

/// The `error_policy` of the CloudNode and Tenant controllers: retries a failed reconcile after
/// the object's next exponential delay; other objects keep their own schedule.
pub fn error_policy<K>(
    object: std::sync::Arc<K>,
    error: &crate::error::Error,
    ctx: std::sync::Arc<crate::context::Context>,
) -> kube::runtime::controller::Action
where
    K: Resource<DynamicType = ()> + kube::ResourceExt,
{
    let delay = ctx.error_backoff.failed(object.as_ref());
    tracing::warn!(
        kind = %K::kind(&()),
        name = %object.name_any(),
        error = %error,
        error_kind = error.metric_label(),
        failures = ctx.error_backoff.failures(object.as_ref()),
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed; retrying"
    );
    kube::runtime::controller::Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyun_crds::v1alpha1::{CloudNode, Tenant};

    fn tenant(name: &str) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"displayName": "t", "level": "City", "regionCode": "320100", "homeNode": "nanjing",
                     "quota": {"cpu": "1", "memory": "1Gi", "storage": "1Gi", "maxSystems": 1}, "securityLevel": 2}
        }))
        .unwrap()
    }

    #[test]
    fn delays_double_from_one_second_to_five_minutes() {
        let backoff = ErrorBackoff::default();
        let seconds: Vec<u64> = (1..=12).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff.delay(u32::MAX), ERROR_BACKOFF_CAP, "no overflow however long it fails");
        assert_eq!(backoff.delay(0), ERROR_BACKOFF_BASE);
    }

    #[test]
    fn each_object_backs_off_on_its_own_and_a_success_resets_it() {
        let backoff = ErrorBackoff::default();
        let (a, b) = (tenant("a"), tenant("b"));
        let a_delays: Vec<u64> = (0..4).map(|_| backoff.failed(&a).as_secs()).collect();
        assert_eq!(a_delays, [1, 2, 4, 8]);
        assert_eq!(backoff.failed(&b).as_secs(), 1, "another object starts from the base");
        assert_eq!(backoff.failures(&a), 4);
        backoff.succeeded(&a);
        assert_eq!(backoff.failures(&a), 0);
        assert_eq!(backoff.failed(&a).as_secs(), 1, "a success starts the sequence again");
        assert_eq!(backoff.failed(&b).as_secs(), 2, "b's count was not touched by a's success");
    }

    #[test]
    fn other_triggers_wait_for_the_delay_and_a_spec_change_does_not() {
        let backoff = ErrorBackoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let mut a = tenant("a");
        a.metadata.generation = Some(1);
        assert_eq!(backoff.hold(&a), None, "nothing failed yet");
        backoff.failed(&a);
        let wait = backoff.hold(&a).expect("held after a failure");
        assert!(wait <= Duration::from_millis(50) && wait > Duration::from_millis(30), "{wait:?}");
        assert_eq!(backoff.hold(&tenant("b")), None, "another object is not held");
        let mut changed = a.clone();
        changed.metadata.generation = Some(2);
        assert_eq!(backoff.hold(&changed), None, "a spec change is tried at once");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(backoff.hold(&a), None, "tried again once the delay has passed");
        assert_eq!(backoff.failures(&a), 1, "waiting is not failing");
    }

    #[test]
    fn objects_of_different_kinds_with_one_name_are_counted_apart() {
        let backoff = ErrorBackoff::default();
        let node: CloudNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "CloudNode", "metadata": {"name": "a"},
            "spec": {"tier": "Provincial", "regionCode": "320000", "displayName": "p", "securityLevel": 3,
                     "capacity": {"cpu": "1", "memory": "1Gi", "storage": "1Gi"}}
        }))
        .unwrap();
        backoff.failed(&tenant("a"));
        backoff.failed(&tenant("a"));
        assert_eq!(backoff.failed(&node).as_secs(), 1);
    }
}
