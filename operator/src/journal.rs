//! The transition journal: what is recorded, how entries chain, and how a chain is verified.
//!
//! ```text
//!  step() ──phase change──► status.transitions (last 16, sequence per object, written to
//!                            │                  Kubernetes with the phase change itself)
//!                            ▼
//!  Publisher::sync_journal ── entries not yet journaled (by uid and sequence) ──►
//!        journal/<systemId>/<n>   create-only, fenced, each carrying the SHA-256 of the one before
//! ```
//!
//! Kubernetes is the source of truth: a transition is journaled from the status that records
//! it, so one that could not be published (the store down, a failover) is published by
//! whichever leader next sees the status. Only more than [`TRANSITIONS_KEPT`] transitions of
//! one object during one outage can be lost, and the next entry then says how many (`missed`).

use sha2::{Digest, Sha256};
use suyun_crds::v1alpha1::{GovSystemStatus, Phase, TRANSITIONS_KEPT, Transition};
use suyun_store::readmodel::{DELETED, JournalEntry};

/// Records the phase change from `before` to `after` (if any) in `after.transitions`, keeping
/// the last [`TRANSITIONS_KEPT`]. The actor is the identity that approved a cutover that used
/// a new approval, the operator otherwise.
pub fn record(before: &GovSystemStatus, after: &mut GovSystemStatus, now: i64) {
    let (from, to) = (before.phase.unwrap_or_default(), after.phase.unwrap_or_default());
    if from == to {
        return;
    }
    let approved_now = to == Phase::CuttingOver
        && after.approved_by.is_some()
        && after.consumed_approval.is_some()
        && before.consumed_approval != after.consumed_approval;
    let sequence = before.transitions.last().map_or(0, |t| t.sequence) + 1;
    let transition = Transition {
        sequence,
        from,
        to,
        reason: after.reason.clone().unwrap_or_default(),
        time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(now).unwrap_or_default(),
        ),
        actor: if approved_now {
            after.approved_by.clone().unwrap_or_default()
        } else {
            suyun_crds::FIELD_MANAGER.to_owned()
        },
        approved_at: if approved_now { after.approved_at.clone() } else { None },
        approval_reason: if approved_now { after.approval_reason.clone() } else { None },
        note: None,
    };
    after.transitions = before.transitions.clone();
    after.transitions.push(transition);
    let excess = after.transitions.len().saturating_sub(TRANSITIONS_KEPT);
    after.transitions.drain(..excess);
}

/// Records a change of the system's residency waiver (`spec.residencyWaiver`) since the one
/// `before` recorded: a transition that keeps the phase, with the reason
/// `ResidencyWaiverRecorded` (actor: who granted it; note: why) or `ResidencyWaiverWithdrawn`
/// (actor: the operator; note: whose waiver it was). Runs after [`record`], so a phase change
/// in the same step comes first.
pub fn record_waiver(
    spec: Option<&suyun_crds::v1alpha1::ResidencyWaiver>,
    before: &GovSystemStatus,
    after: &mut GovSystemStatus,
    now: i64,
) {
    if spec == before.residency_waiver.as_ref() {
        return;
    }
    let phase = after.phase.unwrap_or_default();
    let (reason, actor, note) = match spec {
        Some(w) => ("ResidencyWaiverRecorded", w.granted_by.clone(), w.reason.clone()),
        None => (
            "ResidencyWaiverWithdrawn",
            suyun_crds::FIELD_MANAGER.to_owned(),
            format!(
                "the waiver granted by {} was withdrawn",
                before.residency_waiver.as_ref().map(|w| w.granted_by.as_str()).unwrap_or_default()
            ),
        ),
    };
    let sequence = after.transitions.last().map_or(0, |t| t.sequence) + 1;
    after.transitions.push(Transition {
        sequence,
        from: phase,
        to: phase,
        reason: reason.to_owned(),
        time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(now).unwrap_or_default(),
        ),
        actor,
        approved_at: None,
        approval_reason: None,
        note: Some(note),
    });
    let excess = after.transitions.len().saturating_sub(TRANSITIONS_KEPT);
    after.transitions.drain(..excess);
    after.residency_waiver = spec.cloned();
}

/// The last entry of one system's journal, as the publisher needs it to append the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its sequence (the next entry gets one more).
    pub sequence: u64,
    /// Hex SHA-256 of its stored bytes (the next entry's `prev`).
    pub hash: String,
    /// Uid of the object whose transition it records.
    pub uid: String,
    /// Which of that object's transitions it records.
    pub transition: u64,
    /// Its `to`: [`DELETED`] when the journal was closed.
    pub to: String,
    /// Its time (RFC 3339).
    pub time: String,
    /// Region code of the system.
    pub region_code: String,
}

impl Head {
    /// The head for an entry stored as `bytes`.
    pub fn of(entry: &JournalEntry, bytes: &[u8]) -> Head {
        Head {
            sequence: entry.sequence,
            hash: hash(bytes),
            uid: entry.uid.clone(),
            transition: entry.transition,
            to: entry.to.clone(),
            time: entry.time.clone(),
            region_code: entry.region_code.clone(),
        }
    }

    /// Whether the journal was closed because its system was deleted.
    pub fn closed(&self) -> bool {
        self.to == DELETED
    }
}

/// Hex SHA-256 of an entry's stored bytes.
pub fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One owned system as the journal sees it: who it is and the transitions its status records.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Its `systemId`.
    pub system_id: &'a str,
    /// Its region code (scopes the entries).
    pub region_code: &'a str,
    /// Uid of the GovSystem object.
    pub uid: &'a str,
    /// `status.transitions`.
    pub transitions: &'a [Transition],
}

/// The entries to append after `head` for `source`, in order, without `sequence` and `prev`
/// (the publisher assigns those): a closing entry first when the journal so far belongs to
/// another object that was not closed, then every transition not yet journaled, the first one
/// saying how many were lost before it.
pub fn pending(head: Option<&Head>, source: &Source<'_>, now: i64) -> Vec<JournalEntry> {
    let mut out = Vec::new();
    // Entries written before objects were recorded by uid belong to the current object.
    let same_object = head.is_some_and(|h| h.uid == source.uid || h.uid.is_empty());
    let mut after = match head {
        Some(h) if same_object => h.transition,
        _ => 0,
    };
    if let Some(h) = head
        && !same_object
        && !h.closed()
    {
        out.push(closing(h, source.system_id, now));
    }
    let new: Vec<&Transition> = source.transitions.iter().filter(|t| t.sequence > after).collect();
    for t in new {
        out.push(JournalEntry {
            system_id: source.system_id.to_owned(),
            region_code: source.region_code.to_owned(),
            sequence: 0,
            from: t.from.as_str().to_owned(),
            to: t.to.as_str().to_owned(),
            reason: t.reason.clone(),
            time: t.time.0.to_string(),
            actor: t.actor.clone(),
            approved_at: t.approved_at.as_ref().map(|a| a.0.to_string()),
            approval_reason: t.approval_reason.clone(),
            note: t.note.clone(),
            uid: source.uid.to_owned(),
            transition: t.sequence,
            missed: t.sequence - after - 1,
            prev: String::new(),
        });
        after = t.sequence;
    }
    out
}

/// The entry that closes the journal after `head` because its object is gone.
pub fn closing(head: &Head, system_id: &str, now: i64) -> JournalEntry {
    JournalEntry {
        system_id: system_id.to_owned(),
        region_code: head.region_code.clone(),
        sequence: 0,
        from: head.to.clone(),
        to: DELETED.to_owned(),
        reason: "SystemDeleted".to_owned(),
        time: k8s_openapi::jiff::Timestamp::from_second(now).unwrap_or_default().to_string(),
        actor: suyun_crds::FIELD_MANAGER.to_owned(),
        approved_at: None,
        approval_reason: None,
        note: None,
        uid: head.uid.clone(),
        transition: head.transition,
        missed: 0,
        prev: String::new(),
    }
}

/// Whether a journal may be compacted (deleted) at `now`: it was closed (its system deleted)
/// more than `retention_seconds` ago. Open journals are never compacted.
pub fn compactable(head: &Head, now: i64, retention_seconds: i64) -> bool {
    head.closed()
        && head.time.parse::<k8s_openapi::jiff::Timestamp>().is_ok_and(|t| now - t.as_second() > retention_seconds)
}

/// What a verified chain holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainSummary {
    /// Entries.
    pub entries: u64,
    /// Transitions recorded as lost (`missed`), summed.
    pub missed: u64,
    /// Whether the journal is closed (the system was deleted).
    pub closed: bool,
    /// Hex SHA-256 of the last entry.
    pub head: String,
}

/// Verifies one system's journal: `entries` are the (sequence from the key, stored bytes) in
/// key order. Sequences run 1, 2, 3… without a gap; every entry parses, names the sequence of
/// its key and carries the hash of the one before; an object's transitions are journaled in
/// order, each once, a gap only where `missed` says so; nothing follows a closing entry but a
/// new object's. The error names the first entry that breaks a rule.
pub fn verify_chain(entries: &[(u64, Vec<u8>)]) -> Result<ChainSummary, String> {
    let mut summary = ChainSummary::default();
    let mut prev_hash = String::new();
    let mut last: Option<JournalEntry> = None;
    for (i, (sequence, bytes)) in entries.iter().enumerate() {
        let expected = i as u64 + 1;
        if *sequence != expected {
            return Err(format!("entry {expected} is missing (found {sequence} in its place)"));
        }
        let entry: JournalEntry =
            serde_json::from_slice(bytes).map_err(|e| format!("entry {sequence} does not parse: {e}"))?;
        if entry.sequence != *sequence {
            return Err(format!("entry {sequence} says it is entry {}", entry.sequence));
        }
        if entry.prev != prev_hash {
            return Err(format!("entry {sequence} does not chain: the entry before it was edited or removed"));
        }
        if let Some(before) = &last {
            let same_object = before.uid == entry.uid || before.uid.is_empty();
            if same_object && before.to == DELETED {
                return Err(format!("entry {sequence} follows the closing entry of the same object"));
            }
            if same_object && entry.to != DELETED && entry.transition != before.transition + 1 + entry.missed {
                return Err(format!(
                    "entry {sequence} records transition {} after {} with {} missed",
                    entry.transition, before.transition, entry.missed
                ));
            }
            if !same_object && before.to != DELETED {
                return Err(format!(
                    "entry {sequence} starts another object before the journal of the first was closed"
                ));
            }
        }
        summary.missed += entry.missed;
        prev_hash = hash(bytes);
        last = Some(entry);
    }
    summary.entries = entries.len() as u64;
    summary.closed = last.is_some_and(|e| e.to == DELETED);
    summary.head = prev_hash;
    Ok(summary)
}

/// Links `entries` (the pending ones of one system, in order) after `head`: assigns sequences
/// and `prev`, and returns each with its stored bytes and the new head.
pub fn link(head: Option<&Head>, entries: Vec<JournalEntry>) -> (Vec<(JournalEntry, Vec<u8>)>, Option<Head>) {
    let mut head = head.cloned();
    let mut out = Vec::with_capacity(entries.len());
    for mut entry in entries {
        entry.sequence = head.as_ref().map_or(0, |h| h.sequence) + 1;
        entry.prev = head.as_ref().map(|h| h.hash.clone()).unwrap_or_default();
        let bytes = serde_json::to_vec(&entry).expect("journal entries serialise");
        head = Some(Head::of(&entry, &bytes));
        out.push((entry, bytes));
    }
    (out, head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase) -> GovSystemStatus {
        GovSystemStatus { phase: Some(phase), ..Default::default() }
    }

    /// The statuses of a whole migration, each recorded from the one before.
    fn migration(phases: &[Phase]) -> Vec<GovSystemStatus> {
        let mut out = vec![status(phases[0])];
        for (i, phase) in phases.iter().enumerate().skip(1) {
            let mut next = out.last().unwrap().clone();
            next.phase = Some(*phase);
            record(out.last().unwrap(), &mut next, 1_800_000_000 + i as i64);
            out.push(next);
        }
        out
    }

    const PHASES: [Phase; 8] = [
        Phase::Pending,
        Phase::Scheduled,
        Phase::Provisioning,
        Phase::Replicating,
        Phase::AwaitingCutover,
        Phase::CuttingOver,
        Phase::Verifying,
        Phase::Completed,
    ];

    fn source<'a>(uid: &'a str, transitions: &'a [Transition]) -> Source<'a> {
        Source { system_id: "JS-320100-0001", region_code: "320100", uid, transitions }
    }

    fn stored(entries: &[(JournalEntry, Vec<u8>)]) -> Vec<(u64, Vec<u8>)> {
        entries.iter().map(|(e, b)| (e.sequence, b.clone())).collect()
    }

    #[test]
    fn a_phase_change_is_recorded_with_the_next_sequence_and_no_change_records_nothing() {
        let statuses = migration(&PHASES);
        let last = statuses.last().unwrap();
        let sequences: Vec<u64> = last.transitions.iter().map(|t| t.sequence).collect();
        assert_eq!(sequences, (1..=7).collect::<Vec<_>>());
        assert_eq!((last.transitions[0].from, last.transitions[0].to), (Phase::Pending, Phase::Scheduled));
        let mut same = last.clone();
        record(last, &mut same, 0);
        assert_eq!(same.transitions, last.transitions);
    }

    #[test]
    fn a_cutover_that_used_a_new_approval_names_the_approver_with_when_and_why() {
        let before = GovSystemStatus { phase: Some(Phase::AwaitingCutover), ..Default::default() };
        let mut after = GovSystemStatus {
            phase: Some(Phase::CuttingOver),
            approved_by: Some("ops@nanjing".into()),
            approved_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1_799_999_000).unwrap(),
            )),
            approval_reason: Some("CHG-2026-0042".into()),
            consumed_approval: Some("store:17".into()),
            reason: Some("CuttingOver".into()),
            ..Default::default()
        };
        record(&before, &mut after, 1_800_000_000);
        let (entries, _) = link(None, pending(None, &source("u1", &after.transitions), 0));
        let e = &entries[0].0;
        assert_eq!(
            (e.from.as_str(), e.to.as_str(), e.actor.as_str()),
            ("AwaitingCutover", "CuttingOver", "ops@nanjing")
        );
        assert_eq!(e.approval_reason.as_deref(), Some("CHG-2026-0042"));
        assert_eq!(e.approved_at.as_deref(), Some("2027-01-15T07:43:20Z"));
        assert_eq!(e.region_code, "320100");
        let mut next = GovSystemStatus { phase: Some(Phase::Verifying), ..after.clone() };
        record(&after, &mut next, 1_800_000_100);
        assert_eq!(next.transitions[1].actor, "suyun-operator");
        assert_eq!(next.transitions[1].approved_at, None);
    }

    #[test]
    fn the_status_keeps_the_last_transitions_and_sequences_keep_counting() {
        let mut s = status(Phase::Pending);
        for i in 0..40 {
            let mut next = s.clone();
            next.phase = Some(if i % 2 == 0 { Phase::Blocked } else { Phase::Pending });
            record(&s, &mut next, i);
            s = next;
        }
        assert_eq!(s.transitions.len(), TRANSITIONS_KEPT);
        assert_eq!(s.transitions.first().unwrap().sequence, 40 - TRANSITIONS_KEPT as u64 + 1);
        assert_eq!(s.transitions.last().unwrap().sequence, 40);
    }

    #[test]
    fn pending_is_what_the_journal_lacks_and_a_retry_adds_nothing_twice() {
        let statuses = migration(&PHASES);
        let all = &statuses.last().unwrap().transitions;
        // Three transitions journaled, then the rest.
        let (first, head) = link(None, pending(None, &source("u1", &all[..3]), 0));
        assert_eq!(first.len(), 3);
        let (rest, head) = link(head.as_ref(), pending(head.as_ref(), &source("u1", all), 0));
        assert_eq!(rest.iter().map(|(e, _)| e.transition).collect::<Vec<_>>(), vec![4, 5, 6, 7]);
        assert!(pending(head.as_ref(), &source("u1", all), 0).is_empty(), "nothing is journaled twice");
        let chain: Vec<_> = first.into_iter().chain(rest).collect();
        let summary = verify_chain(&stored(&chain)).unwrap();
        assert_eq!((summary.entries, summary.missed, summary.closed), (7, 0, false));
    }

    #[test]
    fn transitions_lost_beyond_what_the_status_keeps_are_counted_in_the_next_entry() {
        let statuses = migration(&PHASES);
        let all = &statuses.last().unwrap().transitions;
        let (first, head) = link(None, pending(None, &source("u1", &all[..2]), 0));
        // Transitions 3 and 4 fell out of the status before the store came back.
        let (rest, _) = link(head.as_ref(), pending(head.as_ref(), &source("u1", &all[4..]), 0));
        assert_eq!(rest[0].0.missed, 2);
        let chain: Vec<_> = first.into_iter().chain(rest).collect();
        assert_eq!(verify_chain(&stored(&chain)).unwrap().missed, 2);
    }

    #[test]
    fn a_new_object_with_the_same_system_id_closes_the_old_journal_first() {
        let statuses = migration(&PHASES[..3]);
        let t = &statuses.last().unwrap().transitions;
        let (old, head) = link(None, pending(None, &source("u1", t), 0));
        let (new, _) = link(head.as_ref(), pending(head.as_ref(), &source("u2", t), 0));
        assert_eq!(new[0].0.to, DELETED);
        assert_eq!(new[0].0.uid, "u1");
        assert_eq!(new[1].0.transition, 1);
        let chain: Vec<_> = old.into_iter().chain(new).collect();
        verify_chain(&stored(&chain)).unwrap();
    }

    #[test]
    fn an_edited_removed_or_reordered_entry_breaks_the_chain() {
        let statuses = migration(&PHASES);
        let (chain, _) = link(None, pending(None, &source("u1", &statuses.last().unwrap().transitions), 0));
        let good = stored(&chain);
        verify_chain(&good).unwrap();

        let mut edited = good.clone();
        let mut entry: JournalEntry = serde_json::from_slice(&edited[2].1).unwrap();
        entry.actor = "someone-else".into();
        edited[2].1 = serde_json::to_vec(&entry).unwrap();
        assert!(verify_chain(&edited).unwrap_err().contains("entry 4 does not chain"));

        let mut removed = good.clone();
        removed.remove(3);
        assert!(verify_chain(&removed).unwrap_err().contains("entry 4 is missing"));

        // Removing an entry and renumbering the rest still breaks the hashes.
        let renumbered: Vec<_> = removed
            .iter()
            .enumerate()
            .map(|(i, (_, b))| {
                let mut e: JournalEntry = serde_json::from_slice(b).unwrap();
                e.sequence = i as u64 + 1;
                (e.sequence, serde_json::to_vec(&e).unwrap())
            })
            .collect();
        assert!(verify_chain(&renumbered).is_err());
    }

    #[test]
    fn a_closed_journal_is_compacted_only_after_the_retention() {
        let statuses = migration(&PHASES[..2]);
        let (_, head) = link(None, pending(None, &source("u1", &statuses[1].transitions), 0));
        let open = head.unwrap();
        let day = 86_400;
        let closed = Head { to: DELETED.into(), time: "2026-01-01T00:00:00Z".into(), ..open.clone() };
        let deleted_at = 1_767_225_600; // 2026-01-01T00:00:00Z
        assert!(!compactable(&open, deleted_at + 1000 * day, 180 * day), "an open journal stays");
        assert!(!compactable(&closed, deleted_at + 180 * day, 180 * day));
        assert!(compactable(&closed, deleted_at + 180 * day + 1, 180 * day));
    }
}
