//! The in-memory index the API serves from: every record of the read-model with its JSON
//! bytes as stored (served without re-serialising) and its etcd revision (its ETag).
//!
//! Systems are also bucketed by city (first four digits of the region code) so that a city's
//! list walks only its own systems.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use suyun_store::readmodel::{
    ApprovalRecord, BudgetRecord, JournalEntry, KeyRef, Keys, NodeRecord, SessionRecord, SystemRecord, TenantRecord,
    WaveRecord,
};

use crate::auth::Scope;

/// One record with its stored bytes and the revision it was last written at.
#[derive(Debug)]
pub struct Entry<T> {
    /// The parsed record.
    pub record: T,
    /// The JSON exactly as stored in etcd.
    pub json: Bytes,
    /// etcd mod revision.
    pub revision: i64,
}

/// A shared entry.
pub type Shared<T> = Arc<Entry<T>>;

/// For one collection, the latest revision at which something of each region changed: a
/// record of the region written, deleted, or moved to another region. A scope's revision of
/// the collection is the highest over the regions it covers, so it follows the caller's own
/// records (deletions included) and nothing else.
///
/// Deletions are known from the time the index was loaded: after a restart the revision of
/// a scope can be lower than before (it is a change marker, not a clock).
#[derive(Debug, Default, Clone)]
pub struct RegionRevisions(HashMap<String, i64>);

impl RegionRevisions {
    /// Notes a change in `region` at `revision`.
    pub fn touch(&mut self, region: &str, revision: i64) {
        let latest = self.0.entry(region.to_owned()).or_default();
        *latest = (*latest).max(revision);
    }

    /// The latest change in a region `scope` covers (0 when none).
    pub fn in_scope(&self, scope: &Scope) -> i64 {
        self.0.iter().filter(|(region, _)| scope.covers(region)).map(|(_, r)| *r).max().unwrap_or(0)
    }
}

/// When the parts of one wave last changed: the fields every scope sees, and each region's
/// counts (which only that region's scopes see).
#[derive(Debug, Default, Clone)]
pub struct WaveRevisions {
    /// Name, order, phase, executor, ETA.
    pub common: i64,
    /// The counts of each region.
    pub regions: BTreeMap<String, i64>,
}

/// The whole read-model at one etcd revision.
#[derive(Debug, Default)]
pub struct Index {
    /// The etcd revision the index reflects (internal: it follows every city's writes, so it
    /// never reaches a response).
    pub revision: i64,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Shared<NodeRecord>>,
    /// Tenants by name.
    pub tenants: BTreeMap<String, Shared<TenantRecord>>,
    /// Systems by `systemId` (the stable sort of every list).
    pub systems: BTreeMap<String, Shared<SystemRecord>>,
    systems_by_city: HashMap<String, BTreeMap<String, Shared<SystemRecord>>>,
    /// Waves by name.
    pub waves: BTreeMap<String, Shared<WaveRecord>>,
    /// City budgets by the city's region code.
    pub budgets: BTreeMap<String, Shared<BudgetRecord>>,
    /// Journal of each system, by sequence.
    pub journal: HashMap<String, BTreeMap<u64, Shared<JournalEntry>>>,
    /// Approvals by `systemId`.
    pub approvals: HashMap<String, Shared<ApprovalRecord>>,
    /// Console sessions by the hash of their id.
    pub sessions: HashMap<String, Shared<SessionRecord>>,
    /// Revision of the latest revocation (deletion) of each system's approval.
    pub approval_deletions: HashMap<String, i64>,
    /// Changes of nodes by region.
    pub node_regions: RegionRevisions,
    /// Changes of tenants by region.
    pub tenant_regions: RegionRevisions,
    /// Changes of systems by region.
    pub system_regions: RegionRevisions,
    /// Changes of city budgets by region.
    pub budget_regions: RegionRevisions,
    /// Changes of wave counts by region (and waves deleted, by the regions they counted).
    pub wave_regions: RegionRevisions,
    /// When the parts of each wave last changed.
    pub wave_revisions: HashMap<String, WaveRevisions>,
}

fn city_of(region: &str) -> &str {
    region.get(..4).unwrap_or(region)
}

/// A record of the read-model as the index keys it: by a name that is also in its key.
trait Keyed {
    /// The name the key must carry.
    fn key_name(&self) -> &str;
}

impl Keyed for NodeRecord {
    fn key_name(&self) -> &str {
        &self.name
    }
}
impl Keyed for TenantRecord {
    fn key_name(&self) -> &str {
        &self.name
    }
}
impl Keyed for SystemRecord {
    fn key_name(&self) -> &str {
        &self.system_id
    }
}
impl Keyed for WaveRecord {
    fn key_name(&self) -> &str {
        &self.name
    }
}
impl Keyed for BudgetRecord {
    fn key_name(&self) -> &str {
        &self.region_code
    }
}
impl Keyed for JournalEntry {
    fn key_name(&self) -> &str {
        &self.system_id
    }
}
impl Keyed for ApprovalRecord {
    fn key_name(&self) -> &str {
        &self.system_id
    }
}

/// The record stored at `key`, or `None` (logged) when it does not parse or names another
/// object than its key: a malformed record is left out, never served, never a panic.
fn parse<T: DeserializeOwned + Keyed>(key: &str, name: &str, value: &[u8], revision: i64) -> Option<Shared<T>> {
    match serde_json::from_slice::<T>(value) {
        Ok(record) if record.key_name() == name => {
            Some(Arc::new(Entry { record, json: Bytes::copy_from_slice(value), revision }))
        }
        Ok(record) => {
            tracing::warn!(%key, revision, named = %record.key_name(), "ignoring a record that names another object");
            None
        }
        Err(e) => {
            tracing::warn!(%key, revision, error = %e, "ignoring a record that does not parse");
            None
        }
    }
}

/// Puts (or, for `None`, removes) a record of a region-scoped collection, noting the change
/// in the region it leaves and the region it is in.
fn set<T>(
    map: &mut BTreeMap<String, Shared<T>>,
    regions: &mut RegionRevisions,
    region_of: impl Fn(&T) -> &str,
    name: &str,
    entry: Option<Shared<T>>,
    revision: i64,
) {
    let old = match entry {
        Some(entry) => {
            regions.touch(region_of(&entry.record), entry.revision);
            map.insert(name.to_owned(), entry)
        }
        None => map.remove(name),
    };
    if let Some(old) = old {
        regions.touch(region_of(&old.record), revision);
    }
}

impl Index {
    /// Applies a put of `key` at `revision` (keys outside the layout are ignored); a record
    /// first seen counts as created at `revision`.
    pub fn put(&mut self, keys: &Keys, key: &str, value: &[u8], revision: i64) {
        self.put_kv(keys, key, value, revision, revision);
    }

    /// Applies a put of `key` written at `revision` and created at `created` (etcd's mod and
    /// create revisions of the key).
    pub fn put_kv(&mut self, keys: &Keys, key: &str, value: &[u8], revision: i64, created: i64) {
        match keys.parse(key) {
            Some(KeyRef::Node(name)) => {
                let entry = parse(key, name, value, revision);
                set(&mut self.nodes, &mut self.node_regions, |n| n.region_code.as_str(), name, entry, revision);
            }
            Some(KeyRef::Tenant(name)) => {
                let entry = parse(key, name, value, revision);
                set(&mut self.tenants, &mut self.tenant_regions, |t| t.region_code.as_str(), name, entry, revision);
            }
            Some(KeyRef::Wave(name)) => {
                let entry = parse(key, name, value, revision);
                self.set_wave(name, entry, revision, created);
            }
            Some(KeyRef::Budget(region)) => {
                let entry = parse(key, region, value, revision);
                set(&mut self.budgets, &mut self.budget_regions, |b| b.region_code.as_str(), region, entry, revision);
            }
            Some(KeyRef::System(id)) => {
                self.remove_system(id, revision);
                if let Some(entry) = parse::<SystemRecord>(key, id, value, revision) {
                    let city = city_of(&entry.record.region_code).to_owned();
                    self.system_regions.touch(&entry.record.region_code, revision);
                    self.systems_by_city.entry(city).or_default().insert(id.to_owned(), entry.clone());
                    self.systems.insert(id.to_owned(), entry);
                }
            }
            Some(KeyRef::Journal(id, sequence)) => {
                if let Some(entry) = parse(key, id, value, revision) {
                    self.journal.entry(id.to_owned()).or_default().insert(sequence, entry);
                }
            }
            Some(KeyRef::Approval(id)) => match parse(key, id, value, revision) {
                Some(entry) => drop(self.approvals.insert(id.to_owned(), entry)),
                None => self.remove_approval(id, revision),
            },
            // A session's key is the hash of its id, which the record does not repeat.
            Some(KeyRef::Session(hash)) => match serde_json::from_slice::<SessionRecord>(value) {
                Ok(record) => {
                    let entry = Arc::new(Entry { record, json: Bytes::copy_from_slice(value), revision });
                    self.sessions.insert(hash.to_owned(), entry);
                }
                Err(e) => {
                    tracing::warn!(%key, revision, error = %e, "ignoring a console session that does not parse");
                    self.sessions.remove(hash);
                }
            },
            Some(KeyRef::Leader) | None => {}
        }
    }

    /// Applies a delete of `key` at `revision`.
    pub fn delete(&mut self, keys: &Keys, key: &str, revision: i64) {
        match keys.parse(key) {
            Some(KeyRef::Node(name)) => {
                set(&mut self.nodes, &mut self.node_regions, |n| n.region_code.as_str(), name, None, revision);
            }
            Some(KeyRef::Tenant(name)) => {
                set(&mut self.tenants, &mut self.tenant_regions, |t| t.region_code.as_str(), name, None, revision);
            }
            Some(KeyRef::Wave(name)) => self.set_wave(name, None, revision, revision),
            Some(KeyRef::Budget(region)) => {
                set(&mut self.budgets, &mut self.budget_regions, |b| b.region_code.as_str(), region, None, revision);
            }
            Some(KeyRef::System(id)) => self.remove_system(id, revision),
            Some(KeyRef::Journal(id, sequence)) => {
                if let Some(entries) = self.journal.get_mut(id) {
                    entries.remove(&sequence);
                    if entries.is_empty() {
                        self.journal.remove(id);
                    }
                }
            }
            Some(KeyRef::Approval(id)) => self.remove_approval(id, revision),
            Some(KeyRef::Session(hash)) => drop(self.sessions.remove(hash)),
            Some(KeyRef::Leader) | None => {}
        }
    }

    fn remove_approval(&mut self, id: &str, revision: i64) {
        if self.approvals.remove(id).is_some() {
            self.approval_deletions.insert(id.to_owned(), revision);
        }
    }

    fn remove_system(&mut self, id: &str, revision: i64) {
        if let Some(old) = self.systems.remove(id) {
            self.system_regions.touch(&old.record.region_code, revision);
            let city = city_of(&old.record.region_code);
            if let Some(bucket) = self.systems_by_city.get_mut(city) {
                bucket.remove(id);
            }
        }
    }

    /// Puts or removes a wave, noting which of its parts changed: the common fields, or the
    /// counts of which regions. A wave first seen counts as changed at its creation, which
    /// says nothing about any city's activity.
    fn set_wave(&mut self, name: &str, entry: Option<Shared<WaveRecord>>, revision: i64, created: i64) {
        let old = match &entry {
            Some(entry) => self.waves.insert(name.to_owned(), entry.clone()),
            None => self.waves.remove(name),
        };
        let Some(new) = entry else {
            self.wave_revisions.remove(name);
            for region in old.iter().flat_map(|o| o.record.counts_by_region.keys()) {
                self.wave_regions.touch(region, revision);
            }
            return;
        };
        let new = &new.record;
        let revisions = match old {
            None => WaveRevisions {
                common: created,
                regions: new.counts_by_region.keys().map(|r| (r.clone(), created)).collect(),
            },
            Some(old) => {
                let old = &old.record;
                let mut revisions = self.wave_revisions.remove(name).unwrap_or_default();
                let common = |w: &WaveRecord| (w.order, w.phase.clone(), w.executor.clone(), w.eta.clone());
                if common(old) != common(new) {
                    revisions.common = revision;
                }
                let regions: std::collections::BTreeSet<&String> =
                    old.counts_by_region.keys().chain(new.counts_by_region.keys()).collect();
                for region in regions {
                    if old.counts_by_region.get(region) != new.counts_by_region.get(region) {
                        revisions.regions.insert(region.clone(), revision);
                        self.wave_regions.touch(region, revision);
                    }
                }
                revisions
            }
        };
        for (region, at) in &revisions.regions {
            if new.counts_by_region.contains_key(region) {
                self.wave_regions.touch(region, *at);
            }
        }
        self.wave_revisions.insert(name.to_owned(), revisions);
    }

    /// The waves `scope` sees: those with systems of its regions (a wave with none of them is
    /// not the scope's business).
    pub fn waves_in<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Shared<WaveRecord>> + 'a {
        self.waves.values().filter(move |w| {
            w.record
                .counts_by_region
                .iter()
                .any(|(region, counts)| scope.covers(region) && counts.values().any(|n| *n > 0))
        })
    }

    /// The latest change of `scope`'s share of the waves it sees: their counts of its regions
    /// and their common fields.
    pub fn waves_revision(&self, scope: &Scope) -> i64 {
        self.waves_in(scope)
            .map(|w| self.wave_revision(&w.record.name, scope))
            .fold(self.wave_regions.in_scope(scope), i64::max)
    }

    /// The revision of a wave as `scope` sees it: its own for the province; for a region,
    /// the latest change of its common fields or of the counts of the regions it covers.
    pub fn wave_revision(&self, name: &str, scope: &Scope) -> i64 {
        let Some(entry) = self.waves.get(name) else { return 0 };
        match (scope, self.wave_revisions.get(name)) {
            (Scope::Province, _) | (_, None) => entry.revision,
            (Scope::Region(_), Some(revisions)) => revisions
                .regions
                .iter()
                .filter(|(region, _)| scope.covers(region))
                .map(|(_, r)| *r)
                .fold(revisions.common, i64::max),
        }
    }

    /// A system, when it exists and `scope` covers it.
    pub fn system(&self, scope: &Scope, id: &str) -> Option<&Shared<SystemRecord>> {
        self.systems.get(id).filter(|s| scope.covers(&s.record.region_code))
    }

    /// Systems of `scope` sorted by `systemId`, after `after` (exclusive), that pass `keep`:
    /// at most `limit`, and the id to continue after when there are more.
    pub fn systems_page<'a>(
        &'a self,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
        mut keep: impl FnMut(&SystemRecord) -> bool,
    ) -> (Vec<&'a Shared<SystemRecord>>, Option<String>) {
        static EMPTY: BTreeMap<String, Shared<SystemRecord>> = BTreeMap::new();
        let map = match scope {
            Scope::Province => &self.systems,
            Scope::Region(code) => self.systems_by_city.get(city_of(code)).unwrap_or(&EMPTY),
        };
        let start = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let mut page: Vec<&'a Shared<SystemRecord>> = Vec::with_capacity(limit.min(1024));
        for entry in map.range::<str, _>((start, Bound::Unbounded)).map(|(_, entry)| entry) {
            if !scope.covers(&entry.record.region_code) || !keep(&entry.record) {
                continue;
            }
            if page.len() == limit {
                // Records are keyed by their own id (`parse` refuses any other), so the id is
                // the key to continue after.
                let last = page.last().map(|s| s.record.system_id.clone());
                return (page, last);
            }
            page.push(entry);
        }
        (page, None)
    }

    /// Every system of `scope` (for the summary).
    pub fn systems_in<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Shared<SystemRecord>> + 'a {
        let (page, _) = self.systems_page(scope, None, usize::MAX, |_| true);
        page.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use suyun_store::Phase;

    use super::*;

    fn system(id: &str, region: &str) -> Vec<u8> {
        serde_json::to_vec(&SystemRecord {
            system_id: id.into(),
            tenant: "t".into(),
            region_code: region.into(),
            phase: Phase::Scheduled.as_str().into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn city_pages_hold_only_the_city() {
        let keys = Keys::default();
        let mut index = Index::default();
        for (i, region) in ["320500", "320100", "320583", "320500", "320000"].iter().enumerate() {
            let id = format!("S-{i}");
            index.put(&keys, &keys.system(&id), &system(&id, region), i as i64 + 1);
        }
        let suzhou = Scope::Region("320500".into());
        let (page, next) = index.systems_page(&suzhou, None, 2, |_| true);
        let ids: Vec<_> = page.iter().map(|e| e.record.system_id.as_str()).collect();
        assert_eq!(ids, ["S-0", "S-2"]);
        assert_eq!(next.as_deref(), Some("S-2"));
        let (page, next) = index.systems_page(&suzhou, next.as_deref(), 2, |_| true);
        assert_eq!(page.len(), 1);
        assert_eq!(next, None);
        // Moving a system to another city moves it between buckets.
        index.put(&keys, &keys.system("S-0"), &system("S-0", "320100"), 9);
        assert_eq!(index.systems_in(&suzhou).count(), 2);
        index.delete(&keys, &keys.system("S-3"), 10);
        assert_eq!(index.systems_in(&suzhou).count(), 1);
        assert_eq!(index.systems_in(&Scope::Province).count(), 4);
    }

    #[test]
    fn a_scope_revision_follows_only_its_own_regions() {
        let keys = Keys::default();
        let mut index = Index::default();
        let suzhou = Scope::Region("320500".into());
        let nanjing = Scope::Region("320100".into());
        index.put(&keys, &keys.system("S-1"), &system("S-1", "320583"), 5);
        index.put(&keys, &keys.system("N-1"), &system("N-1", "320100"), 6);
        assert_eq!((index.system_regions.in_scope(&suzhou), index.system_regions.in_scope(&nanjing)), (5, 6));
        // 南京 writes and deletes: 苏州's revision stays.
        index.put(&keys, &keys.system("N-1"), &system("N-1", "320100"), 7);
        index.delete(&keys, &keys.system("N-1"), 8);
        assert_eq!((index.system_regions.in_scope(&suzhou), index.system_regions.in_scope(&nanjing)), (5, 8));
        // A deletion in 苏州 moves it; so does a system leaving 苏州 for 南京 (for both).
        index.put(&keys, &keys.system("S-2"), &system("S-2", "320500"), 9);
        index.delete(&keys, &keys.system("S-2"), 10);
        assert_eq!(index.system_regions.in_scope(&suzhou), 10);
        index.put(&keys, &keys.system("S-1"), &system("S-1", "320100"), 11);
        assert_eq!((index.system_regions.in_scope(&suzhou), index.system_regions.in_scope(&nanjing)), (11, 11));
        assert_eq!(index.system_regions.in_scope(&Scope::Province), 11);
    }

    #[test]
    fn a_wave_revision_follows_the_common_fields_and_the_scopes_counts() {
        let keys = Keys::default();
        let mut index = Index::default();
        let suzhou = Scope::Region("320500".into());
        let wave = |suzhou_done: u64, nanjing_done: u64, phase: &str| {
            let counts = [("320583", suzhou_done), ("320100", nanjing_done)]
                .into_iter()
                .map(|(r, n)| (r.to_owned(), BTreeMap::from([(Phase::Completed.as_str().to_owned(), n)])))
                .collect();
            serde_json::to_vec(&WaveRecord {
                name: "w".into(),
                phase: phase.into(),
                counts_by_region: counts,
                ..Default::default()
            })
            .unwrap()
        };
        // First seen (as when the store is read): its creation, not its last write.
        index.put_kv(&keys, &keys.wave("w"), &wave(1, 1, "Running"), 20, 3);
        assert_eq!(index.wave_revision("w", &suzhou), 3);
        assert_eq!(index.wave_revision("w", &Scope::Province), 20);
        index.put(&keys, &keys.wave("w"), &wave(1, 2, "Running"), 21);
        assert_eq!(index.wave_revision("w", &suzhou), 3, "南京's counts");
        assert_eq!(index.wave_regions.in_scope(&suzhou), 3);
        index.put(&keys, &keys.wave("w"), &wave(2, 2, "Running"), 22);
        assert_eq!(index.wave_revision("w", &suzhou), 22, "苏州's counts");
        index.put(&keys, &keys.wave("w"), &wave(2, 2, Phase::Completed.as_str()), 23);
        assert_eq!(index.wave_revision("w", &suzhou), 23, "the phase everyone sees");
        index.delete(&keys, &keys.wave("w"), 24);
        assert_eq!(index.wave_revision("w", &suzhou), 0);
        assert_eq!(index.wave_regions.in_scope(&suzhou), 24, "a deletion of a wave 苏州 saw");
    }

    #[test]
    fn malformed_records_are_left_out() {
        let keys = Keys::default();
        let mut index = Index::default();
        index.put(&keys, &keys.system("S-1"), &system("S-1", "320500"), 1);
        // Another object's record under this key, then bytes that do not parse.
        index.put(&keys, &keys.system("S-2"), &system("S-1", "320500"), 2);
        assert!(!index.systems.contains_key("S-2"));
        index.put(&keys, &keys.system("S-1"), b"\xff{", 3);
        assert!(index.systems.is_empty());
        assert_eq!(index.system_regions.in_scope(&Scope::Region("320500".into())), 3, "it left the scope");
        // A multi-byte region code is in no city's scope, and bucketing it does not panic.
        index.put(&keys, &keys.system("S-3"), &system("S-3", "320é0"), 4);
        assert_eq!(index.systems_in(&Scope::Region("320500".into())).count(), 0);
        assert_eq!(index.systems_in(&Scope::Province).count(), 1);
        index.delete(&keys, &keys.system("S-3"), 5);
    }
}
