//! Fencing the loop's Kubernetes writes: each write is made only while the leader Lease names
//! this replica, and is conditional on the resourceVersion it was computed from
//! ([`super::writes::status_patch`]).
//!
//! The Lease is read when the last confirmation has run out: a confirmation holds until the
//! Lease's `renewTime + leaseDurationSeconds`, the earliest a successor could take over, mapped
//! onto this process's monotonic clock (replicas' clocks are assumed to agree within a
//! fraction of the lease, as Kubernetes' own leader election assumes). A replica paused past
//! its lease (SIGSTOP, a stalled node) therefore reads the Lease again before its next write,
//! finds a successor named there, and writes nothing more.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::time::Instant;
use tracing::{error, warn};

/// The loop's view of whether it may still write.
#[derive(Debug)]
pub struct LeaseCheck {
    api: Api<Lease>,
    name: String,
    instance: String,
    confirmed_until: tokio::sync::Mutex<Option<Instant>>,
    deposed: AtomicBool,
}

impl LeaseCheck {
    /// Checks the Lease `name` (in `api`'s namespace) for `instance`.
    pub fn new(api: Api<Lease>, name: &str, instance: &str) -> LeaseCheck {
        LeaseCheck {
            api,
            name: name.to_owned(),
            instance: instance.to_owned(),
            confirmed_until: tokio::sync::Mutex::new(None),
            deposed: AtomicBool::new(false),
        }
    }

    /// Whether this replica may write now. Reads the Lease when the last confirmation ran
    /// out; `false` when the Lease names another replica (then [`LeaseCheck::deposed`] too),
    /// has run out, or cannot be read.
    pub async fn leads(&self) -> bool {
        if self.deposed() {
            return false;
        }
        let mut until = self.confirmed_until.lock().await;
        if until.is_some_and(|u| Instant::now() < u) {
            return true;
        }
        *until = None;
        let lease = match self.api.get(&self.name).await {
            Ok(lease) => lease.spec.unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, "could not read the leader Lease: not writing until it can be read");
                return false;
            }
        };
        if lease.holder_identity.as_deref() != Some(self.instance.as_str()) {
            error!(holder = ?lease.holder_identity, "the leader Lease names another replica: this one writes nothing more");
            self.deposed.store(true, Ordering::Relaxed);
            return false;
        }
        let (Some(renewed), Some(duration)) = (lease.renew_time, lease.lease_duration_seconds) else {
            return false;
        };
        let expires = renewed.0 + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(duration));
        let left = expires.duration_since(k8s_openapi::jiff::Timestamp::now());
        match Duration::try_from(left) {
            Ok(left) if !left.is_zero() => {
                *until = Some(Instant::now() + left);
                true
            }
            _ => {
                warn!("the leader Lease ran out before it was renewed: not writing");
                false
            }
        }
    }

    /// Whether the Lease was found naming another replica: this one must stop leading.
    pub fn deposed(&self) -> bool {
        self.deposed.load(Ordering::Relaxed)
    }
}
