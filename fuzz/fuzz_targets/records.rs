//! Status-store record decoding: arbitrary bytes as each read-model record type, and arbitrary
//! key/value writes and deletes through the apiserver's `Index::put`/`delete` (what its etcd
//! watch applies), followed by the scoped reads every handler makes of what was decoded. A
//! malformed record may be ignored; nothing may panic.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use suyun_apiserver::auth::Scope;
use suyun_apiserver::index::Index;
use suyun_store::readmodel::{
    ApprovalRecord, JournalEntry, Keys, LeaderRecord, NodeRecord, SystemRecord, TenantRecord, WaveRecord,
};

/// Which key of the layout a write goes to.
#[derive(Arbitrary, Debug)]
enum Collection {
    Node,
    Tenant,
    System,
    Wave,
    Journal(u64),
    Approval,
    Leader,
    /// A key the fuzzer spells out in full after the prefix.
    Raw,
}

#[derive(Arbitrary, Debug)]
enum Op<'a> {
    /// Any bytes as the value.
    Put {
        collection: Collection,
        name: &'a str,
        value: &'a [u8],
        revision: i64,
    },
    /// A well-formed record of the collection whose strings (region code included) are arbitrary:
    /// reaches what handlers do with decoded values far sooner than bytes do.
    PutRecord {
        collection: Collection,
        name: &'a str,
        region: &'a str,
        text: &'a str,
        number: u64,
        revision: i64,
    },
    Delete {
        collection: Collection,
        name: &'a str,
    },
}

/// A record of `collection` named `name` in `region`, every other string `text`, as stored JSON.
fn record(collection: &Collection, name: &str, region: &str, text: &str, number: u64) -> Vec<u8> {
    let json = match collection {
        Collection::Node => serde_json::to_vec(&NodeRecord {
            name: name.into(),
            display_name: text.into(),
            tier: text.into(),
            region_code: region.into(),
            systems_by_phase: [(text.to_owned(), number)].into(),
            ..Default::default()
        }),
        Collection::Tenant => serde_json::to_vec(&TenantRecord {
            name: name.into(),
            level: text.into(),
            region_code: region.into(),
            home_node: text.into(),
            ..Default::default()
        }),
        Collection::System | Collection::Raw | Collection::Leader => serde_json::to_vec(&SystemRecord {
            system_id: name.into(),
            tenant: text.into(),
            region_code: region.into(),
            phase: text.into(),
            node: Some(text.into()),
            wave: Some(text.into()),
            ..Default::default()
        }),
        Collection::Wave => serde_json::to_vec(&WaveRecord {
            name: name.into(),
            phase: text.into(),
            counts_by_region: [(region.to_owned(), [(text.to_owned(), number)].into())].into(),
            ..Default::default()
        }),
        Collection::Journal(sequence) => serde_json::to_vec(&JournalEntry {
            system_id: name.into(),
            region_code: region.into(),
            sequence: *sequence,
            from: text.into(),
            to: text.into(),
            reason: text.into(),
            time: text.into(),
            actor: text.into(),
            ..Default::default()
        }),
        Collection::Approval => serde_json::to_vec(&ApprovalRecord {
            system_id: name.into(),
            region_code: region.into(),
            approved_by: text.into(),
            scope: text.into(),
            time: text.into(),
        }),
    };
    json.expect("records serialise")
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Bytes decoded as every record type on their own.
    record: &'a [u8],
    ops: Vec<Op<'a>>,
    /// Region codes the reads are scoped to (besides the province and two real cities).
    scope: &'a str,
    after: Option<&'a str>,
    limit: u8,
}

fn key(keys: &Keys, collection: &Collection, name: &str) -> String {
    match collection {
        Collection::Node => keys.node(name),
        Collection::Tenant => keys.tenant(name),
        Collection::System => keys.system(name),
        Collection::Wave => keys.wave(name),
        Collection::Journal(sequence) => keys.journal(name, *sequence),
        Collection::Approval => keys.approval(name),
        Collection::Leader => keys.leader(),
        Collection::Raw => format!("{}{name}", keys.prefix()),
    }
}

fuzz_target!(|input: Input<'_>| {
    let _ = serde_json::from_slice::<NodeRecord>(input.record);
    let _ = serde_json::from_slice::<TenantRecord>(input.record);
    let _ = serde_json::from_slice::<SystemRecord>(input.record);
    let _ = serde_json::from_slice::<WaveRecord>(input.record);
    let _ = serde_json::from_slice::<JournalEntry>(input.record);
    let _ = serde_json::from_slice::<ApprovalRecord>(input.record);
    let _ = serde_json::from_slice::<LeaderRecord>(input.record);

    let keys = Keys::default();
    let mut index = Index::default();
    for op in &input.ops {
        match op {
            Op::Put { collection, name, value, revision } => {
                index.put(&keys, &key(&keys, collection, name), value, *revision)
            }
            Op::PutRecord { collection, name, region, text, number, revision } => {
                let value = record(collection, name, region, text, *number);
                index.put(&keys, &key(&keys, collection, name), &value, *revision)
            }
            Op::Delete { collection, name } => index.delete(&keys, &key(&keys, collection, name)),
        }
    }

    let mut scopes = vec![Scope::Province, Scope::Region("320500".into()), Scope::Region("320100".into())];
    if let Ok(scope) = Scope::parse(input.scope) {
        scopes.push(scope);
    }
    for scope in &scopes {
        let ids: Vec<String> = index.systems.keys().cloned().collect();
        for id in &ids {
            let _ = index.system(scope, id);
        }
        let _ = index.systems_page(scope, input.after, usize::from(input.limit), |_| true);
        let _ = index.systems_in(scope).count();
        for node in index.nodes.values() {
            let _ = scope.covers(&node.record.region_code);
        }
        for tenant in index.tenants.values() {
            let _ = scope.covers(&tenant.record.region_code);
        }
        for entries in index.journal.values() {
            for entry in entries.values() {
                let _ = scope.covers(&entry.record.region_code);
            }
        }
        for approval in index.approvals.values() {
            let _ = scope.covers(&approval.record.region_code);
        }
        for wave in index.waves.values() {
            for region in wave.record.counts_by_region.keys() {
                let _ = scope.covers(region);
            }
        }
    }
});
