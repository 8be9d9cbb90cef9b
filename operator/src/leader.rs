//! Leader election with a Kubernetes Lease: several replicas run, one leads and reconciles, the
//! others wait. The rules are client-go's:
//!
//! - A replica may take the Lease when nobody holds it, when it holds it itself, or when the
//!   holder's record has not changed for a whole `leaseDurationSeconds` *as observed by this
//!   replica's own clock* (so clock skew between nodes does not matter).
//! - The leader renews every fifth of the Lease duration; when it could not renew for two
//!   thirds of it, it stops leading by itself, before any standby may take over. An unreachable kube-apiserver therefore makes the leader
//!   step down after a few seconds, without ending the process: it campaigns again and, when
//!   the apiserver is back and nobody else took the Lease, leads again at once.
//! - A leader shutting down cleanly releases the Lease (empty holder), so a standby takes over
//!   at once.
//!
//! Every call to the apiserver is bounded by a short timeout, so no method waits on a dead
//! apiserver for longer than the rules above say.
//!
//! The election runs on a thread of its own, with its own single-threaded runtime and its own
//! Kubernetes client (connection pool included). A leader whose runtime is busy (planning
//! thousands of systems, publishing, a debug build on a loaded machine) therefore still renews
//! on time: renewals never wait behind the controllers' work.

use std::sync::Arc;
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

/// This replica's side of the election. The operator calls [`acquire`](Self::acquire) while
/// standing by and [`hold`](Self::hold) while leading; each runs on the election thread and is
/// cancelled there when the returned future is dropped.
#[derive(Debug)]
pub struct Elector {
    campaign: Arc<tokio::sync::Mutex<Campaign>>,
    runtime: tokio::runtime::Handle,
    duration: Duration,
    /// Ends the election thread when the elector is dropped.
    _thread: tokio::sync::oneshot::Sender<()>,
}

impl Elector {
    /// Starts the election thread and an elector for `--lease-name` in `--lease-namespace`, as
    /// `--instance` (`POD_NAME`). Its client is configured like the operator's (`KUBECONFIG` or
    /// the in-cluster service account) but lives on the election thread.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("leader-election".into()).spawn(move || {
            let _ = runtime.block_on(ended);
        })?;
        // The client's request buffer and connections are spawned where it is built: there.
        let client = handle.spawn(Client::try_default()).await??;
        let campaign = Campaign::new(client, config);
        let duration = campaign.duration;
        Ok(Self { campaign: Arc::new(tokio::sync::Mutex::new(campaign)), runtime: handle, duration, _thread: end })
    }

    /// Runs `work` on the election thread; dropping the returned future cancels it there.
    async fn there<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> T {
        let task = tokio_util::task::AbortOnDropHandle::new(self.runtime.spawn(work));
        match task.await {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled only by dropping this future, or by the thread ending with the elector.
            Err(e) => unreachable!("the election task was cancelled while awaited: {e}"),
        }
    }

    /// Campaigns until this replica holds the Lease. Failures (an unreachable apiserver, a
    /// conflicting write) are logged and retried; cancel by dropping the future.
    pub async fn acquire(&self) {
        let campaign = self.campaign.clone();
        self.there(async move { campaign.lock().await.acquire().await }).await;
    }

    /// While leading: renews the Lease every fifth of its duration and returns when leadership is
    /// lost (another holder, or no successful renewal for two thirds of the Lease duration).
    pub async fn hold(&self) {
        let campaign = self.campaign.clone();
        self.there(async move { campaign.lock().await.hold().await }).await;
    }

    /// Releases the Lease if this replica holds it (empty holder), so a standby takes over at
    /// once. Bounded by [`CALL_TIMEOUT`] in all; failures are logged.
    pub async fn release(&self) {
        let campaign = self.campaign.clone();
        self.there(async move { campaign.lock().await.release().await }).await;
    }

    /// The Lease duration: how long a replica that stepped down stands aside before campaigning
    /// again, so that another replica can take the Lease first.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

/// The election's state, on the election thread.
#[derive(Debug)]
struct Campaign {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// How often a leader renews, and a standby looks.
    retry: Duration,
    /// A leader that could not renew for this long stops leading.
    renew_deadline: Duration,
    observed: Option<Observed>,
    renewed: Option<Instant>,
    /// The Lease as this replica last wrote it, while leading: a renewal patches it directly
    /// (one call, conditional on its resourceVersion) instead of reading it first.
    held: Option<Lease>,
}

impl Campaign {
    fn new(client: Client, config: &Config) -> Self {
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
            held: None,
        }
    }

    /// Whether this replica holds the Lease as far as it knows (renewed within the deadline).
    fn leading(&self) -> bool {
        self.renewed.is_some_and(|at| at.elapsed() < self.renew_deadline)
    }

    async fn acquire(&mut self) {
        let mut failures = 0u32;
        loop {
            match self.try_acquire_or_renew(CALL_TIMEOUT).await {
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

    async fn hold(&mut self) {
        loop {
            let deadline = self.renewed.map_or_else(Instant::now, |at| at + self.renew_deadline);
            let next = (Instant::now() + self.retry).min(deadline);
            tokio::time::sleep_until(next).await;
            // A renewal may take until the deadline: on a loaded apiserver one call can take
            // longer than the election's usual call timeout, and giving up early helps nobody.
            let attempt =
                tokio::time::timeout_at(deadline.max(Instant::now() + Duration::from_millis(100)), self.renew());
            match attempt.await {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => {
                    let holder = self.observed.as_ref().and_then(|o| o.holder.clone()).unwrap_or_default();
                    tracing::warn!(lease = %self.name, %holder, "the leader Lease was taken by another replica");
                    self.renewed = None;
                    self.held = None;
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
                self.held = None;
                return;
            }
        }
    }

    /// One renewal while leading: patches the Lease as this replica last wrote it, conditional
    /// on that resourceVersion (one call). When someone else wrote it since (409), falls back to
    /// reading it ([`Self::try_acquire_or_renew`]). `Ok(true)` when renewed.
    async fn renew(&mut self) -> anyhow::Result<bool> {
        let Some(held) = self.held.clone() else { return self.try_acquire_or_renew(self.renew_deadline).await };
        let started = Instant::now();
        let spec = held.spec.unwrap_or_default();
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": held.metadata.resource_version},
            "spec": self.spec(
                spec.acquire_time.unwrap_or_else(|| MicroTime(k8s_openapi::jiff::Timestamp::now())),
                MicroTime(k8s_openapi::jiff::Timestamp::now()),
                spec.lease_transitions.unwrap_or(0),
            ),
        });
        match self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(patched) => Ok(self.won(&patched, started)),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.held = None;
                self.try_acquire_or_renew(self.renew_deadline).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One attempt: `Ok(true)` when this replica now holds the Lease (taken or renewed). Each
    /// apiserver call is bounded by `call_timeout`.
    async fn try_acquire_or_renew(&mut self, call_timeout: Duration) -> anyhow::Result<bool> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let started = Instant::now();
        let existing = match tokio::time::timeout(call_timeout, self.api.get_opt(&self.name)).await {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("reading Lease {} timed out", self.name),
        };
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match tokio::time::timeout(call_timeout, self.api.create(&PostParams::default(), &lease)).await {
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
        match tokio::time::timeout(call_timeout, self.api.patch(&self.name, &params, &patch)).await {
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
        self.held = Some(lease.clone());
        true
    }

    async fn release(&mut self) {
        self.renewed = None;
        self.held = None;
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
}
