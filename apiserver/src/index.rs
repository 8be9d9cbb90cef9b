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
use suyun_crds::readmodel::{
    ApprovalRecord, JournalEntry, KeyRef, Keys, NodeRecord, SystemRecord, TenantRecord, WaveRecord,
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

/// The whole read-model at one etcd revision.
#[derive(Debug, Default)]
pub struct Index {
    /// The etcd revision the index reflects.
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
    /// Journal of each system, by sequence.
    pub journal: HashMap<String, BTreeMap<u64, Shared<JournalEntry>>>,
    /// Approvals by `systemId`.
    pub approvals: HashMap<String, Shared<ApprovalRecord>>,
}

fn city_of(region: &str) -> &str {
    region.get(..4).unwrap_or(region)
}

fn parse<T: DeserializeOwned>(key: &str, value: &[u8], revision: i64) -> Option<Shared<T>> {
    match serde_json::from_slice(value) {
        Ok(record) => Some(Arc::new(Entry { record, json: Bytes::copy_from_slice(value), revision })),
        Err(e) => {
            tracing::warn!(%key, revision, error = %e, "ignoring a record that does not parse");
            None
        }
    }
}

fn set<T>(map: &mut BTreeMap<String, Shared<T>>, name: &str, entry: Option<Shared<T>>) {
    match entry {
        Some(entry) => map.insert(name.to_owned(), entry),
        None => map.remove(name),
    };
}

impl Index {
    /// Applies a put of `key` at `revision` (keys outside the layout are ignored).
    pub fn put(&mut self, keys: &Keys, key: &str, value: &[u8], revision: i64) {
        match keys.parse(key) {
            Some(KeyRef::Node(name)) => set(&mut self.nodes, name, parse(key, value, revision)),
            Some(KeyRef::Tenant(name)) => set(&mut self.tenants, name, parse(key, value, revision)),
            Some(KeyRef::Wave(name)) => set(&mut self.waves, name, parse(key, value, revision)),
            Some(KeyRef::System(id)) => {
                self.remove_system(id);
                if let Some(entry) = parse::<SystemRecord>(key, value, revision) {
                    let city = city_of(&entry.record.region_code).to_owned();
                    self.systems_by_city.entry(city).or_default().insert(id.to_owned(), entry.clone());
                    self.systems.insert(id.to_owned(), entry);
                }
            }
            Some(KeyRef::Journal(id, sequence)) => {
                if let Some(entry) = parse(key, value, revision) {
                    self.journal.entry(id.to_owned()).or_default().insert(sequence, entry);
                }
            }
            Some(KeyRef::Approval(id)) => match parse(key, value, revision) {
                Some(entry) => drop(self.approvals.insert(id.to_owned(), entry)),
                None => drop(self.approvals.remove(id)),
            },
            Some(KeyRef::Leader) | None => {}
        }
    }

    /// Applies a delete of `key`.
    pub fn delete(&mut self, keys: &Keys, key: &str) {
        match keys.parse(key) {
            Some(KeyRef::Node(name)) => drop(self.nodes.remove(name)),
            Some(KeyRef::Tenant(name)) => drop(self.tenants.remove(name)),
            Some(KeyRef::Wave(name)) => drop(self.waves.remove(name)),
            Some(KeyRef::System(id)) => self.remove_system(id),
            Some(KeyRef::Journal(id, sequence)) => {
                if let Some(entries) = self.journal.get_mut(id) {
                    entries.remove(&sequence);
                    if entries.is_empty() {
                        self.journal.remove(id);
                    }
                }
            }
            Some(KeyRef::Approval(id)) => drop(self.approvals.remove(id)),
            Some(KeyRef::Leader) | None => {}
        }
    }

    fn remove_system(&mut self, id: &str) {
        if let Some(old) = self.systems.remove(id) {
            let city = city_of(&old.record.region_code);
            if let Some(bucket) = self.systems_by_city.get_mut(city) {
                bucket.remove(id);
            }
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
    use super::*;

    fn system(id: &str, region: &str) -> Vec<u8> {
        serde_json::to_vec(&SystemRecord {
            system_id: id.into(),
            tenant: "t".into(),
            region_code: region.into(),
            phase: "Scheduled".into(),
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
        index.delete(&keys, &keys.system("S-3"));
        assert_eq!(index.systems_in(&suzhou).count(), 1);
        assert_eq!(index.systems_in(&Scope::Province).count(), 4);
    }
}
