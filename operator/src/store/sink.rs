//! The status store as the migration loop uses it: the read-model and the journal published
//! through a fenced [`Publisher`], remembering what was published so that the next publish
//! writes only what changed and deletes what disappeared.

use std::collections::{HashMap, HashSet};

use suyun_store::readmodel::Record;
use tracing::warn;

use super::{ApprovalMirror, Change, JournalReport, Publisher, RecordKey, StoreError};
use crate::journal::Source;
use crate::readmodel::{PublishedSystems, SystemInputs};

/// Where the loop publishes the read-model and the journal (the status store), if configured.
#[allow(missing_debug_implementations)]
pub struct StoreSink {
    publisher: Publisher,
    /// The node, tenant, wave and budget records published, by key.
    published: HashMap<String, RecordKey>,
    /// What each published system record was built from.
    systems: PublishedSystems,
    reconciled: bool,
    /// What the journal appended since the metrics last took it.
    journaled: JournalReport,
}

impl StoreSink {
    /// A sink writing through `publisher` (which holds the etcd fence).
    pub fn new(publisher: Publisher) -> Self {
        Self {
            publisher,
            published: HashMap::new(),
            systems: PublishedSystems::new(),
            reconciled: false,
            journaled: Default::default(),
        }
    }

    /// Keeps a deleted system's journal for `seconds` before it is compacted.
    pub fn set_retention(&mut self, seconds: i64) {
        self.publisher.set_retention(seconds);
    }

    /// Whether the store was reconciled against a full read-model (until then only a full
    /// publish is worth making).
    pub fn is_reconciled(&self) -> bool {
        self.reconciled
    }

    /// What the journal appended since this was last asked.
    pub fn take_journaled(&mut self) -> JournalReport {
        std::mem::take(&mut self.journaled)
    }

    /// The publisher, for writes outside the read-model (approvals).
    pub fn publisher_mut(&mut self) -> &mut Publisher {
        &mut self.publisher
    }

    fn record_key(record: &Record) -> RecordKey {
        match record {
            Record::Node(n) => RecordKey::Node(n.name.clone()),
            Record::Tenant(t) => RecordKey::Tenant(t.name.clone()),
            Record::System(s) => RecordKey::System(s.system_id.clone()),
            Record::Wave(w) => RecordKey::Wave(w.name.clone()),
            Record::Budget(b) => RecordKey::Budget(b.region_code.clone()),
        }
    }

    /// What the published system records were built from: a system whose inputs are the same
    /// needs no record this time (see [`crate::readmodel::records`]).
    pub fn published_systems(&self) -> &PublishedSystems {
        &self.systems
    }

    /// Publishes the read-model and brings the journal up to date with `sources` (every owned
    /// system). `records` are every node, tenant and wave record and the records of the systems
    /// whose inputs changed since they were published, `built` those inputs, `present` the
    /// `systemId` of every system the read-model holds. On the first call (nothing published
    /// yet, so `records` are all of them) the store is reconciled against the records (stale
    /// keys deleted); afterwards only what changed is written and what disappeared is deleted.
    /// `Ok(true)` when committed, `Ok(false)` when it failed and is retried next iteration
    /// (with the same records, as nothing counts as published), `Err` only when this replica
    /// was fenced out.
    pub async fn publish(
        &mut self,
        records: Vec<Record>,
        built: Vec<(String, SystemInputs)>,
        present: &HashSet<&str>,
        sources: &[Source<'_>],
        now: i64,
    ) -> Result<bool, ()> {
        let keys = self.publisher.fence().keys().clone();
        let current: HashMap<String, RecordKey> = records
            .iter()
            .filter(|r| !matches!(r, Record::System(_)))
            .map(|r| (r.key(&keys), Self::record_key(r)))
            .collect();
        let result = if self.reconciled {
            let gone = self.published.iter().filter(|(k, _)| !current.contains_key(*k)).map(|(_, rk)| rk.clone());
            let gone_systems =
                self.systems.keys().filter(|id| !present.contains(id.as_str())).map(|id| RecordKey::System(id.clone()));
            let gone: Vec<Change> = gone.chain(gone_systems).map(Change::Delete).collect();
            self.publisher.publish(records.into_iter().map(Change::Put).chain(gone)).await
        } else {
            self.publisher.reconcile(records).await
        };
        let journal_result = match &result {
            Ok(_) => self.sync_journal(sources, true, now).await,
            Err(_) => Ok(()),
        };
        let outcome = Self::outcome(result.map(|_| ()).and(journal_result));
        if outcome == Ok(true) {
            self.reconciled = true;
            self.published = current;
            self.systems.retain(|id, _| present.contains(id.as_str()));
            self.systems.extend(built);
        }
        outcome
    }

    /// Publishes the records of systems whose status was just written, and journals their
    /// transitions, ahead of the iteration's full publish; only once the store was reconciled.
    pub async fn publish_systems(
        &mut self,
        records: Vec<Record>,
        sources: &[Source<'_>],
        now: i64,
    ) -> Result<bool, ()> {
        let result = self.publisher.publish(records.into_iter().map(Change::Put)).await;
        let journal_result = match &result {
            Ok(_) => self.sync_journal(sources, false, now).await,
            Err(_) => Ok(()),
        };
        Self::outcome(result.map(|_| ()).and(journal_result))
    }

    async fn sync_journal(&mut self, sources: &[Source<'_>], complete: bool, now: i64) -> Result<(), StoreError> {
        let report = self.publisher.sync_journal(sources, complete, now).await?;
        self.journaled.appended += report.appended;
        self.journaled.missed += report.missed;
        Ok(())
    }

    fn outcome(result: Result<(), StoreError>) -> Result<bool, ()> {
        match result {
            Ok(()) => Ok(true),
            Err(e @ StoreError::Fenced { .. }) => {
                tracing::error!(error = %e, "fenced out of the status store: another replica leads");
                Err(())
            }
            Err(e) => {
                warn!(error = %e, "publishing to the status store failed; retrying next iteration");
                Ok(false)
            }
        }
    }
}

/// The status store as the loop uses it, once this replica holds the store's fence.
#[allow(missing_debug_implementations)]
pub struct StoreLink {
    /// Where the read-model and the journal are published.
    pub sink: StoreSink,
    /// The REST API's approvals.
    pub approvals: ApprovalMirror,
}
