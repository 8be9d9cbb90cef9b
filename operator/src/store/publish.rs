//! Writing the read-model: batched, fenced transactions that skip what has not changed.
//!
//! The publisher remembers the bytes it last wrote under each key, so a planner run that
//! touches 7,900 systems but changes 40 writes 40 keys. Writes are chunked to etcd's
//! `--max-txn-ops` (128 by default): 7,900 changed systems are 62 transactions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use suyun_store::readmodel::{JournalEntry, KeyRef, Keys, Record};

use super::{Fence, StoreError, list_prefix};
use crate::journal::{self, Head, Source};

/// Which record to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// A cloud node, by name.
    Node(String),
    /// A tenant, by name.
    Tenant(String),
    /// A system, by `systemId` (its approval goes with it; its journal stays, see
    /// [`Publisher::sync_journal`]).
    System(String),
    /// A wave, by name.
    Wave(String),
    /// A city's budget, by the city's region code.
    Budget(String),
}

/// One change to the read-model.
// Nearly every change is a `Put`, so boxing the record would add an allocation to the common
// case to shrink the rare one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create or replace a record.
    Put(Record),
    /// Delete a record.
    Delete(RecordKey),
}

impl From<Record> for Change {
    fn from(record: Record) -> Change {
        Change::Put(record)
    }
}

/// What one call wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Transactions committed.
    pub txns: usize,
    /// Keys written.
    pub puts: usize,
    /// Keys (or key ranges) deleted.
    pub deletes: usize,
    /// Records skipped because the store already had exactly these bytes.
    pub unchanged: usize,
}

/// What one [`Publisher::sync_journal`] appended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalReport {
    /// Entries appended (closing entries included).
    pub appended: usize,
    /// Journals closed because their system is gone.
    pub closed: usize,
    /// Transitions recorded as lost (more happened during an outage than a status keeps).
    pub missed: u64,
    /// Journals compacted (deleted after the retention).
    pub compacted: usize,
}

/// The leader's writer. Not `Clone`: one publisher per leadership term.
pub struct Publisher {
    fence: Fence,
    client: Client,
    max_txn_ops: usize,
    written: HashMap<String, Vec<u8>>,
    /// The last entry of each system's journal, as this publisher knows it.
    heads: HashMap<String, Head>,
    /// Systems whose head must be read from the store before anything is appended: a commit
    /// failed or its reply was lost, so what the store holds is not known here.
    unsure: BTreeSet<String>,
    retention_seconds: i64,
    compacted_at: Option<std::time::Instant>,
}

/// How often a leader looks for journals to compact, at most.
const COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("fence", &self.fence).field("written", &self.written.len()).finish()
    }
}

enum Op {
    Put(String, Vec<u8>),
    Delete(String),
    DeletePrefix(String),
}

impl Publisher {
    /// A publisher writing under `fence`'s leadership, at most `max_txn_ops` operations per
    /// transaction (etcd's `--max-txn-ops`). Call [`Publisher::reconcile`] first.
    pub fn new(fence: Fence, max_txn_ops: usize) -> Publisher {
        Publisher {
            client: fence.client(),
            fence,
            max_txn_ops: max_txn_ops.max(1),
            written: HashMap::new(),
            heads: HashMap::new(),
            unsure: BTreeSet::new(),
            retention_seconds: 180 * 86_400,
            compacted_at: None,
        }
    }

    /// Keeps the journal of a deleted system `seconds` after its deletion before compacting it
    /// (180 days by default).
    pub fn set_retention(&mut self, seconds: i64) {
        self.retention_seconds = seconds;
    }

    /// The leadership this publisher writes under.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Gives the leadership back (for [`Fence::resign`]).
    pub fn into_fence(self) -> Fence {
        self.fence
    }

    /// Writes `changes`, skipping records whose bytes equal what this publisher last wrote.
    pub async fn publish(&mut self, changes: impl IntoIterator<Item = Change>) -> Result<PublishReport, StoreError> {
        let keys = self.fence.keys().clone();
        let mut report = PublishReport::default();
        let mut ops = Vec::new();
        for change in changes {
            match change {
                Change::Put(record) => {
                    let key = record.key(&keys);
                    let value = record.to_json();
                    if self.written.get(&key) == Some(&value) {
                        report.unchanged += 1;
                    } else {
                        ops.push(Op::Put(key, value));
                    }
                }
                Change::Delete(which) => ops.extend(delete_ops(&keys, &which)),
            }
        }
        self.commit(ops, &mut report).await?;
        Ok(report)
    }

    /// Makes the read-model equal to `snapshot` (every node, tenant, system, wave and city
    /// budget the cluster has): writes what differs from the store, deletes every record not in
    /// it and the approvals of systems that no longer exist, and reads where each journal ends.
    /// Run it on becoming leader.
    pub async fn reconcile(&mut self, snapshot: Vec<Record>) -> Result<PublishReport, StoreError> {
        let keys = self.fence.keys().clone();
        let mut stored: HashMap<String, Vec<u8>> = HashMap::new();
        for collection in ["nodes", "tenants", "systems", "waves", "budgets"] {
            let (kvs, _) = list_prefix(&mut self.client, &keys.collection(collection), 1000, false).await?;
            for kv in kvs {
                let (key, value) = kv.into_key_value();
                stored.insert(String::from_utf8_lossy(&key).into_owned(), value);
            }
        }
        let mut wanted: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut systems = BTreeSet::new();
        for record in &snapshot {
            if let Record::System(system) = record {
                systems.insert(system.system_id.clone());
            }
            wanted.insert(record.key(&keys), record.to_json());
        }
        let mut report = PublishReport::default();
        let mut ops = Vec::new();
        for (key, value) in &wanted {
            if stored.get(key) == Some(value) {
                report.unchanged += 1;
            } else {
                ops.push(Op::Put(key.clone(), value.clone()));
            }
        }
        ops.extend(stored.keys().filter(|k| !wanted.contains_key(*k)).map(|k| Op::Delete(k.clone())));

        // The journals stay (a deleted system's is closed by `sync_journal` and kept for the
        // retention); their heads are where appending continues.
        self.load_heads().await?;
        let (approvals, _) = list_prefix(&mut self.client, &keys.collection("approvals"), 5000, true).await?;
        for kv in &approvals {
            if let Some(KeyRef::Approval(system_id)) = kv.key_str().ok().and_then(|k| keys.parse(k))
                && !systems.contains(system_id)
            {
                ops.push(Op::Delete(keys.approval(system_id)));
            }
        }

        self.written = stored;
        self.written.retain(|k, v| wanted.get(k) == Some(v));
        self.commit(ops, &mut report).await?;
        Ok(report)
    }

    /// Reads the last entry of every journal.
    async fn load_heads(&mut self) -> Result<(), StoreError> {
        let keys = self.fence.keys().clone();
        let (entries, _) = list_prefix(&mut self.client, &keys.collection("journal"), 500, false).await?;
        self.heads.clear();
        self.unsure.clear();
        for kv in &entries {
            let Some(KeyRef::Journal(system_id, sequence)) = kv.key_str().ok().and_then(|k| keys.parse(k)) else {
                continue;
            };
            if self.heads.get(system_id).is_some_and(|h| h.sequence >= sequence) {
                continue;
            }
            match serde_json::from_slice::<JournalEntry>(kv.value()) {
                Ok(entry) => drop(self.heads.insert(system_id.to_owned(), Head::of(&entry, kv.value()))),
                Err(e) => tracing::error!(system = %system_id, sequence, error = %e, "unreadable journal entry"),
            }
        }
        Ok(())
    }

    /// Reads the last entry of `system_id`'s journal from the store.
    async fn read_head(&mut self, system_id: &str) -> Result<Option<Head>, StoreError> {
        let prefix = self.fence.keys().journal_of(system_id);
        let options = GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Descend).with_limit(1);
        let response = self.client.get(prefix, Some(options)).await?;
        Ok(response
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<JournalEntry>(kv.value()).ok().map(|e| Head::of(&e, kv.value()))))
    }

    /// Brings the journal up to date with `sources` (owned systems and the transitions their
    /// statuses record): appends every transition not journaled yet. With `complete` (the
    /// sources are every system the cluster has), also closes the journals of systems that are
    /// gone and, at most hourly, compacts journals closed longer ago than the retention.
    ///
    /// Every entry is put only if its key does not exist, under the leader fence. When a commit
    /// fails or its reply is lost, the heads of the systems in it are read again before the
    /// next append, so a sequence is never reused and a transition never journaled twice.
    pub async fn sync_journal(
        &mut self,
        sources: &[Source<'_>],
        complete: bool,
        now: i64,
    ) -> Result<JournalReport, StoreError> {
        for system_id in std::mem::take(&mut self.unsure) {
            match self.read_head(&system_id).await {
                Ok(Some(head)) => drop(self.heads.insert(system_id, head)),
                Ok(None) => drop(self.heads.remove(&system_id)),
                Err(e) => {
                    self.unsure.insert(system_id);
                    return Err(e);
                }
            }
        }
        let mut report = JournalReport::default();
        let mut linked: Vec<(String, JournalEntry, Vec<u8>)> = Vec::new();
        let mut append = |system_id: &str, entries: Vec<JournalEntry>, head: Option<&Head>| {
            let (entries, _) = journal::link(head, entries);
            for (entry, bytes) in entries {
                report.missed += entry.missed;
                report.closed += usize::from(entry.to == suyun_store::readmodel::DELETED);
                linked.push((system_id.to_owned(), entry, bytes));
            }
        };
        let mut present = BTreeSet::new();
        for source in sources {
            present.insert(source.system_id);
            let entries = journal::pending(self.heads.get(source.system_id), source, now);
            if !entries.is_empty() {
                append(source.system_id, entries, self.heads.get(source.system_id));
            }
        }
        if complete {
            for (system_id, head) in &self.heads {
                if !head.closed() && !present.contains(system_id.as_str()) {
                    append(system_id, vec![journal::closing(head, system_id, now)], Some(head));
                }
            }
        }
        report.appended = linked.len();
        if report.missed > 0 {
            tracing::warn!(
                missed = report.missed,
                "transitions lost from the journal: more happened during the outage than a status keeps"
            );
        }
        self.commit_journal(linked).await?;
        if complete && self.compacted_at.is_none_or(|t| t.elapsed() >= COMPACTION_INTERVAL) {
            report.compacted = self.compact(now).await?;
            self.compacted_at = Some(std::time::Instant::now());
        }
        Ok(report)
    }

    /// Commits linked entries, create-only and fenced, in chunks; the heads follow each chunk
    /// committed.
    async fn commit_journal(&mut self, linked: Vec<(String, JournalEntry, Vec<u8>)>) -> Result<(), StoreError> {
        let keys = self.fence.keys().clone();
        // etcd counts a nested transaction against what the outer one leaves of
        // `--max-txn-ops`: the outer one has the fence's comparisons.
        let per_txn = self.max_txn_ops.saturating_sub(self.fence.compares().len()).max(1);
        let mut rest = linked.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<_> = rest.by_ref().take(per_txn).collect();
            let mut compares = Vec::with_capacity(chunk.len());
            let mut puts = Vec::with_capacity(chunk.len());
            for (system_id, entry, bytes) in &chunk {
                let key = keys.journal(system_id, entry.sequence);
                compares.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
                puts.push(TxnOp::put(key, bytes.clone(), None));
            }
            let create_only = Txn::new().when(compares).and_then(puts);
            let txn = Txn::new().when(self.fence.compares()).and_then([TxnOp::txn(create_only)]);
            let response = match self.client.txn(txn).await {
                Ok(response) => response,
                Err(e) => {
                    // The commit may or may not have happened: read before appending again.
                    self.unsure.extend(chunk.into_iter().map(|(id, _, _)| id));
                    return Err(e.into());
                }
            };
            if !response.succeeded() {
                return Err(self.fence.fenced_error());
            }
            let created =
                response.op_responses().into_iter().any(|r| matches!(r, TxnOpResponse::Txn(t) if t.succeeded()));
            if !created {
                let systems: BTreeSet<String> = chunk.into_iter().map(|(id, _, _)| id).collect();
                let first = systems.iter().next().cloned().unwrap_or_default();
                self.unsure.extend(systems);
                return Err(StoreError::JournalMoved { system_id: first });
            }
            for (system_id, entry, bytes) in chunk {
                self.heads.insert(system_id, Head::of(&entry, &bytes));
            }
        }
        Ok(())
    }

    /// Deletes the journals closed longer ago than the retention; returns how many.
    async fn compact(&mut self, now: i64) -> Result<usize, StoreError> {
        let keys = self.fence.keys().clone();
        let old: Vec<String> = self
            .heads
            .iter()
            .filter(|(_, h)| journal::compactable(h, now, self.retention_seconds))
            .map(|(id, _)| id.clone())
            .collect();
        let ops = old.iter().map(|id| Op::DeletePrefix(keys.journal_of(id))).collect();
        self.commit(ops, &mut PublishReport::default()).await?;
        for id in &old {
            self.heads.remove(id);
            tracing::info!(system = %id, "journal compacted: closed longer ago than the retention");
        }
        Ok(old.len())
    }

    /// Deletes the approval of `system_id` if it is still the one written at `revision`: a newer
    /// approval is left alone. Fenced like every write; `Ok` when this replica still leads,
    /// whether or not there was anything to delete.
    pub async fn delete_approval(&mut self, system_id: &str, revision: i64) -> Result<(), StoreError> {
        let key = self.fence.keys().approval(system_id);
        let only_that_one = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, revision)])
            .and_then([TxnOp::delete(key, None)]);
        let txn = Txn::new().when(self.fence.compares()).and_then([TxnOp::txn(only_that_one)]);
        if self.client.txn(txn).await?.succeeded() { Ok(()) } else { Err(self.fence.fenced_error()) }
    }

    /// Commits `ops` in fenced transactions of at most `max_txn_ops` operations. What was
    /// committed before a failure stays recorded, so a retry writes only the rest.
    async fn commit(&mut self, ops: Vec<Op>, report: &mut PublishReport) -> Result<(), StoreError> {
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let chunk: Vec<Op> = ops.by_ref().take(self.max_txn_ops).collect();
            let txn_ops: Vec<TxnOp> = chunk
                .iter()
                .map(|op| match op {
                    Op::Put(key, value) => TxnOp::put(key.clone(), value.clone(), None),
                    Op::Delete(key) => TxnOp::delete(key.clone(), None),
                    Op::DeletePrefix(prefix) => TxnOp::delete(prefix.clone(), Some(DeleteOptions::new().with_prefix())),
                })
                .collect();
            let response = self.client.txn(Txn::new().when(self.fence.compares()).and_then(txn_ops)).await?;
            if !response.succeeded() {
                return Err(self.fence.fenced_error());
            }
            report.txns += 1;
            for op in chunk {
                match op {
                    Op::Put(key, value) => {
                        report.puts += 1;
                        self.written.insert(key, value);
                    }
                    Op::Delete(key) | Op::DeletePrefix(key) => {
                        report.deletes += 1;
                        self.written.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }
}

fn delete_ops(keys: &Keys, which: &RecordKey) -> Vec<Op> {
    match which {
        RecordKey::Node(name) => vec![Op::Delete(keys.node(name))],
        RecordKey::Tenant(name) => vec![Op::Delete(keys.tenant(name))],
        RecordKey::Wave(name) => vec![Op::Delete(keys.wave(name))],
        RecordKey::Budget(region_code) => vec![Op::Delete(keys.budget(region_code))],
        RecordKey::System(id) => vec![Op::Delete(keys.system(id)), Op::Delete(keys.approval(id))],
    }
}
