//! Writing the read-model: batched, fenced transactions that skip what has not changed.
//!
//! The publisher remembers the bytes it last wrote under each key, so a planner run that
//! touches 7,900 systems but changes 40 writes 40 keys. Writes are chunked to etcd's
//! `--max-txn-ops` (128 by default): 7,900 changed systems are 62 transactions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, Txn, TxnOp};
use suyun_crds::readmodel::{JournalEntry, KeyRef, Keys, Record};

use super::{Fence, StoreError, list_prefix};

/// Which record to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// A cloud node, by name.
    Node(String),
    /// A tenant, by name.
    Tenant(String),
    /// A system, by `systemId` (its journal and approval go with it).
    System(String),
    /// A wave, by name.
    Wave(String),
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

/// The leader's writer. Not `Clone`: one publisher per leadership term.
pub struct Publisher {
    fence: Fence,
    client: Client,
    max_txn_ops: usize,
    written: HashMap<String, Vec<u8>>,
    journal_next: HashMap<String, u64>,
}

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
            journal_next: HashMap::new(),
        }
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

    /// Makes the read-model equal to `snapshot` (every node, tenant, system and wave the
    /// cluster has): writes what differs from the store, deletes every record not in it, and
    /// the journals and approvals of systems that no longer exist. Run it on becoming leader.
    pub async fn reconcile(&mut self, snapshot: Vec<Record>) -> Result<PublishReport, StoreError> {
        let keys = self.fence.keys().clone();
        let mut stored: HashMap<String, Vec<u8>> = HashMap::new();
        for collection in ["nodes", "tenants", "systems", "waves"] {
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

        // Journals and approvals of systems that are gone; journal positions of the others.
        self.journal_next.clear();
        let (journal, _) = list_prefix(&mut self.client, &keys.collection("journal"), 5000, true).await?;
        let mut stale_journals = BTreeSet::new();
        for kv in &journal {
            if let Some(KeyRef::Journal(system_id, sequence)) = kv.key_str().ok().and_then(|k| keys.parse(k)) {
                if systems.contains(system_id) {
                    let next = self.journal_next.entry(system_id.to_owned()).or_insert(1);
                    *next = (*next).max(sequence + 1);
                } else {
                    stale_journals.insert(system_id.to_owned());
                }
            }
        }
        ops.extend(stale_journals.iter().map(|id| Op::DeletePrefix(keys.journal_of(id))));
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

    /// Appends phase transitions to the journal. Sequences are assigned here (one after the
    /// last entry of each system, which [`Publisher::reconcile`] reads); the entries are
    /// returned as written.
    pub async fn append_journal(&mut self, entries: Vec<JournalEntry>) -> Result<Vec<JournalEntry>, StoreError> {
        let keys = self.fence.keys().clone();
        let mut written = Vec::with_capacity(entries.len());
        let mut ops = Vec::with_capacity(entries.len());
        let mut next = self.journal_next.clone();
        for mut entry in entries {
            let sequence = next.entry(entry.system_id.clone()).or_insert(1);
            entry.sequence = *sequence;
            *sequence += 1;
            let value = serde_json::to_vec(&entry).expect("journal entries serialise");
            ops.push(Op::Put(keys.journal(&entry.system_id, entry.sequence), value));
            written.push(entry);
        }
        let mut report = PublishReport::default();
        self.commit(ops, &mut report).await?;
        self.journal_next = next;
        Ok(written)
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
        RecordKey::System(id) => {
            vec![Op::Delete(keys.system(id)), Op::DeletePrefix(keys.journal_of(id)), Op::Delete(keys.approval(id))]
        }
    }
}
