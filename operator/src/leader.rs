//! Leader election with a Kubernetes Lease: several replicas run, one leads and reconciles, the
//! others wait. The rules are client-go's:
//!
//! - A replica may take the Lease when nobody holds it, when it holds it itself, or when the
//!   holder's record has not changed for a whole `leaseDurationSeconds` *as observed by this
//!   replica's own clock* (so clock skew between nodes does not matter).
//! - The leader renews every [`Elector::retry`]; when it could not renew for
//!   [`Elector::renew_deadline`] (two thirds of the Lease duration) it stops leading by itself,
//!   before any standby may take over. An unreachable kube-apiserver therefore makes the leader
//!   step down after a few seconds, without ending the process: it campaigns again and, when
//!   the apiserver is back and nobody else took the Lease, leads again at once.
//! - A leader shutting down cleanly releases the Lease (empty holder), so a standby takes over
//!   at once.
//!
//! Every call to the apiserver is bounded by a short timeout, so no method waits on a dead
//! apiserver for longer than the rules above say.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use tokio::time::Instant;

use crate::config::Config;

/// Longest wait for one apiserver call of the election.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The last Lease record this replica saw, and when it saw it change.
#[derive(Debug, Clone)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    duration: Duration,
    at: Instant,
}

/// This replica's side of the election. Not a background task: the operator calls
/// [`acquire`](Self::acquire) while standing by and [`hold`](Self::hold) while leading.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// How often a leader renews, and a standby looks.
    pub retry: Duration,
    /// A leader that could not renew for this long stops leading.
    pub renew_deadline: Duration,
    observed: Option<Observed>,
    renewed: Option<Instant>,
}

impl Elector {
    /// An elector for `--lease-name` in `--lease-namespace`, as `--instance` (`POD_NAME`).
    pub fn new(client: Client, config: &Config) -> Self {
        let duration = Duration::from_secs(config.lease_duration_seconds.max(3));
        Self {
            api: Api::namespaced(client, &config.lease_namespace),
            name: config.lease_name.clone(),
            identity: config.instance.clone(),
            duration,
            retry: duration / 5,
            renew_deadline: duration * 2 / 3,
            observed: None,
            renewed: None,
        }
    }

    /// Whether this replica holds the Lease as far as it knows (renewed within the deadline).
    pub fn leading(&self) -> bool {
        self.renewed.is_some_and(|at| at.elapsed() < self.renew_deadline)
    }

    /// Campaigns until this replica holds the Lease. Failures (an unreachable apiserver, a
    /// conflicting write) are logged and retried; cancel by dropping the future.
    pub async fn acquire(&mut self) {
        let mut failures = 0u32;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(15) {
                        tracing::warn!(error = %e, lease = %self.name, failures, "cannot reach the leader Lease; retrying");
                    }
                }
            }
            // Look again when the holder's record would expire, at the latest after `retry`.
            let expiry = self.observed.as_ref().map(|o| o.at + o.duration);
            let next = Instant::now() + self.retry;
            let wake = expiry.filter(|e| *e > Instant::now()).map_or(next, |e| e.min(next));
            tokio::time::sleep_until(wake).await;
        }
    }

    /// While leading: renews the Lease every `retry` and returns when leadership is lost (another
    /// holder, or no successful renewal for `renew_deadline`).
    pub async fn hold(&mut self) {
        loop {
            let deadline = self.renewed.map_or_else(Instant::now, |at| at + self.renew_deadline);
            let next = (Instant::now() + self.retry).min(deadline);
            tokio::time::sleep_until(next).await;
            let attempt = tokio::time::timeout_at(
                deadline.max(Instant::now() + Duration::from_millis(100)),
                self.try_acquire_or_renew(),
            );
            match attempt.await {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => {
                    let holder = self.observed.as_ref().and_then(|o| o.holder.clone()).unwrap_or_default();
                    tracing::warn!(lease = %self.name, %holder, "the leader Lease was taken by another replica");
                    self.renewed = None;
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, lease = %self.name, "renewing the leader Lease failed"),
                Err(_) => tracing::warn!(lease = %self.name, "renewing the leader Lease timed out"),
            }
            if !self.leading() {
                tracing::warn!(
                    lease = %self.name,
                    deadline_s = self.renew_deadline.as_secs_f32(),
                    "could not renew the leader Lease in time: no longer leading"
                );
                self.renewed = None;
                return;
            }
        }
    }

    /// One attempt: `Ok(true)` when this replica now holds the Lease (taken or renewed).
    async fn try_acquire_or_renew(&mut self) -> anyhow::Result<bool> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let started = Instant::now();
        let existing = match tokio::time::timeout(CALL_TIMEOUT, self.api.get_opt(&self.name)).await {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("reading Lease {} timed out", self.name),
        };
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match tokio::time::timeout(CALL_TIMEOUT, self.api.create(&PostParams::default(), &lease)).await {
                Ok(Ok(created)) => Ok(self.won(&created, started)),
                Ok(Err(kube::Error::Api(e))) if e.code == 409 => Ok(false),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => anyhow::bail!("creating Lease {} timed out", self.name),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let duration = spec.lease_duration_seconds.map_or(self.duration, |d| Duration::from_secs(d.max(1) as u64));
        // The record's age is measured from when this replica first saw it, not from its
        // renewTime (written by another node's clock).
        let changed = self.observed.as_ref().is_none_or(|o| o.holder != holder || o.renew_time != spec.renew_time);
        if changed {
            self.observed =
                Some(Observed { holder: holder.clone(), renew_time: spec.renew_time.clone(), duration, at: started });
        }
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let expired = self.observed.as_ref().is_some_and(|o| o.at + o.duration <= Instant::now());
        if !(mine || holder.is_none() || expired) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine { spec.acquire_time.clone().unwrap_or_else(|| now.clone()) } else { now.clone() };
        // A merge patch carrying the resourceVersion read above: a concurrent writer makes it
        // fail with 409 (and the chart's Role grants `patch`, not `update`).
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": lease.metadata.resource_version.take()},
            "spec": self.spec(acquired, now, transitions),
        });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        match tokio::time::timeout(CALL_TIMEOUT, self.api.patch(&self.name, &params, &patch)).await {
            Ok(Ok(patched)) => Ok(self.won(&patched, started)),
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => Ok(false),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => anyhow::bail!("writing Lease {} timed out", self.name),
        }
    }

    fn spec(&self, acquire_time: MicroTime, renew_time: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(acquire_time),
            renew_time: Some(renew_time),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    fn won(&mut self, lease: &Lease, started: Instant) -> bool {
        let spec = lease.spec.clone().unwrap_or_default();
        self.observed = Some(Observed {
            holder: spec.holder_identity,
            renew_time: spec.renew_time,
            duration: self.duration,
            at: started,
        });
        // The renewal counts from when it was sent: the standbys' clocks start later.
        self.renewed = Some(started);
        true
    }

    /// Releases the Lease if this replica holds it (empty holder), so a standby takes over at
    /// once. Bounded by [`CALL_TIMEOUT`] in all; failures are logged.
    pub async fn release(&mut self) {
        self.renewed = None;
        let result = async {
            let Some(lease) = self.api.get_opt(&self.name).await? else { return Ok(false) };
            let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref());
            if holder != Some(self.identity.as_str()) {
                return Ok(false);
            }
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": lease.metadata.resource_version},
                "spec": {"holderIdentity": null, "acquireTime": null, "renewTime": null, "leaseDurationSeconds": 1},
            });
            self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            Ok::<_, kube::Error>(true)
        };
        match tokio::time::timeout(CALL_TIMEOUT, result).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.name, "leader Lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, lease = %self.name, "could not release the leader Lease"),
            Err(_) => tracing::warn!(lease = %self.name, "releasing the leader Lease timed out"),
        }
    }

    /// The Lease duration: how long a replica that stepped down stands aside before campaigning
    /// again, so that another replica can take the Lease first.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}
