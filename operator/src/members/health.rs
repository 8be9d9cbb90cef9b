//! Whether a member cluster is reachable, from the results of probing it (`GET /version`):
//! the `ClusterReachable` condition a CloudNode shows, the member's Kubernetes version, when it
//! was last heard from, and whether its capacity figures are stale. Pure: the probing task
//! feeds it results and the time.

use suyun_crds::conditions::DesiredCondition;

use super::NoClient;

/// The condition type a member-backed CloudNode carries.
pub const CLUSTER_REACHABLE: &str = "ClusterReachable";

/// Failed probes in a row before a member counts as unreachable: one lost request is not an
/// outage.
pub const FAILURES_BEFORE_UNREACHABLE: u32 = 3;

/// What is known about one member's reachability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reachability {
    /// The member's `gitVersion`, from the last successful probe.
    pub version: Option<String>,
    /// When a probe last succeeded (Unix seconds).
    pub last_seen: Option<i64>,
    /// Failed probes since the last success.
    pub failures: u32,
    /// The last failure, for the condition's message (never a credential: errors are the
    /// client's, about the connection).
    pub last_error: Option<String>,
}

impl Reachability {
    /// A probe succeeded at `now`, the member runs `version`.
    pub fn succeeded(&mut self, version: String, now: i64) {
        *self = Reachability { version: Some(version), last_seen: Some(now), failures: 0, last_error: None };
    }

    /// A probe failed with `error`.
    pub fn failed(&mut self, error: String) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
    }

    /// Whether the member counts as reachable: heard from, and fewer than
    /// [`FAILURES_BEFORE_UNREACHABLE`] failures since. While it is not, it takes no new
    /// placements, migrations on it pause, and its capacity figures are stale.
    pub fn reachable(&self) -> bool {
        self.last_seen.is_some() && self.failures < FAILURES_BEFORE_UNREACHABLE
    }

    /// The `ClusterReachable` condition, given why there is no client if there is none. Its
    /// message does not change from one failed probe to the next (no counter, no elapsed time),
    /// so that an outage does not rewrite the status on every probe.
    pub fn condition(&self, no_client: Option<&NoClient>) -> DesiredCondition {
        if let Some(why) = no_client {
            return DesiredCondition::new(CLUSTER_REACHABLE, false, "NoCredentials", why.to_string());
        }
        let heard = |t: Option<i64>| match t.and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t).ok()) {
            Some(t) => format!("last heard from at {t}"),
            None => "never heard from".to_owned(),
        };
        match (self.reachable(), &self.last_error) {
            (true, _) => DesiredCondition::new(
                CLUSTER_REACHABLE,
                true,
                "Reachable",
                format!("Kubernetes {}", self.version.as_deref().unwrap_or("?")),
            ),
            (false, Some(error)) => {
                let what = match self.last_seen {
                    Some(_) => {
                        format!("{FAILURES_BEFORE_UNREACHABLE} probes in a row failed, {}", heard(self.last_seen))
                    }
                    None => "never heard from".to_owned(),
                };
                DesiredCondition::new(
                    CLUSTER_REACHABLE,
                    false,
                    "Unreachable",
                    format!("{what}: {error}; no new placements there, its migrations pause"),
                )
            }
            (false, None) => {
                DesiredCondition::new(CLUSTER_REACHABLE, false, "NotProbedYet", "the member has not been probed yet")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_unreachable_after_repeated_failures_and_back_on_the_first_success() {
        let mut r = Reachability::default();
        assert!(!r.reachable());
        assert_eq!(r.condition(None).reason, "NotProbedYet");
        r.succeeded("v1.34.4".into(), 100);
        assert!(r.reachable());
        assert_eq!(r.condition(None).message, "Kubernetes v1.34.4");
        for n in 1..FAILURES_BEFORE_UNREACHABLE {
            r.failed("connection refused".into());
            assert!(r.reachable(), "one lost request ({n}) is not an outage");
        }
        r.failed("connection refused".into());
        assert!(!r.reachable());
        let c = r.condition(None);
        assert!(!c.status && c.reason == "Unreachable", "{c:?}");
        assert!(
            c.message.contains("last heard from at 1970-01-01T00:01:40Z") && c.message.contains("connection refused"),
            "{c:?}"
        );
        r.failed("connection refused".into());
        assert_eq!(r.condition(None), c, "another failed probe does not change the condition");
        assert_eq!(r.version.as_deref(), Some("v1.34.4"), "the last known version stays");
        r.succeeded("v1.34.5".into(), 200);
        assert!(r.reachable() && r.failures == 0 && r.last_error.is_none());
    }

    #[test]
    fn a_member_never_heard_from_is_unreachable_from_its_first_failed_probe() {
        let mut r = Reachability::default();
        r.failed("connection refused".into());
        let c = r.condition(None);
        assert_eq!((c.status, c.reason.as_str()), (false, "Unreachable"));
        assert!(c.message.starts_with("never heard from: connection refused"), "{c:?}");
    }

    #[test]
    fn without_credentials_the_condition_says_which_secret() {
        let why = NoClient::SecretMissing { secret: "suzhou-kubeconfig".into() };
        let c = Reachability::default().condition(Some(&why));
        assert!(!c.status && c.reason == "NoCredentials" && c.message.contains("suzhou-kubeconfig"), "{c:?}");
    }
}
