//! Status conditions in the Kubernetes convention, computed in one place so that
//! `lastTransitionTime` changes only when a condition's status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition to set, before transition-time bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    /// Condition type, e.g. Ready.
    pub type_: &'static str,
    /// Whether the condition holds.
    pub status: bool,
    /// PascalCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl DesiredCondition {
    /// A condition of `type_` with the given status, reason and message.
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// Builds the new condition list from the previous one: each desired condition keeps the
/// previous `lastTransitionTime` when its status did not change, and gets `now` otherwise.
/// Conditions not in `desired` are dropped; the order follows `desired`.
pub fn merge_conditions(
    previous: &[Condition],
    desired: Vec<DesiredCondition>,
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: d.type_.to_owned(),
                status,
                reason: d.reason,
                message: d.message,
                last_transition_time,
                observed_generation,
            }
        })
        .collect()
}

/// Whether the conditions differ in anything but `lastTransitionTime`, i.e. whether writing
/// them would change what a reader sees.
pub fn conditions_changed(a: &[Condition], b: &[Condition]) -> bool {
    a.len() != b.len()
        || a.iter().zip(b).any(|(x, y)| {
            x.type_ != y.type_
                || x.status != y.status
                || x.reason != y.reason
                || x.message != y.message
                || x.observed_generation != y.observed_generation
        })
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn keeps_transition_time_while_status_holds_and_moves_it_on_change() {
        let first =
            merge_conditions(&[], vec![DesiredCondition::new("Ready", true, "Reconciled", "ok")], Some(1), &at(100));
        assert_eq!(first[0].last_transition_time, at(100));
        let same = merge_conditions(
            &first,
            vec![DesiredCondition::new("Ready", true, "Reconciled", "still ok")],
            Some(2),
            &at(200),
        );
        assert_eq!(same[0].last_transition_time, at(100), "status unchanged: time kept");
        assert_eq!(same[0].message, "still ok");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge_conditions(
            &same,
            vec![DesiredCondition::new("Ready", false, "InvalidSpec", "bad")],
            Some(3),
            &at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300), "status changed: time moves");
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn change_detection_ignores_only_the_transition_time() {
        let a = merge_conditions(&[], vec![DesiredCondition::new("Ready", true, "R", "m")], Some(1), &at(1));
        let mut b = a.clone();
        b[0].last_transition_time = at(2);
        assert!(!conditions_changed(&a, &b));
        b[0].message = "other".into();
        assert!(conditions_changed(&a, &b));
    }
}
