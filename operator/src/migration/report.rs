//! Stage 4 of an iteration, report: what the writes changed becomes the read-model and the
//! journal in the status store, the metrics, the capacity accounts the CloudNode and Tenant
//! controllers show, and the wave statuses.

use std::collections::BTreeMap;

use futures::StreamExt;
use kube::ResourceExt;
use suyun_crds::v1alpha1::GovSystemStatus;
use suyun_planner::Plan;
use suyun_store::readmodel::Record;

use super::snapshot::Snapshot;
use super::waves::WaveState;
use crate::accounts::{self, Accounts};
use crate::context::Context;
use crate::metrics::PublishOutcome;
use crate::store::StoreSink;

/// Publishes each status as soon as it is written, while the other writes are still in flight:
/// what city operators see follows Kubernetes by one etcd transaction, not by the iteration's
/// slowest write. Returns whether this replica was fenced out of the store meanwhile. (Only
/// once the store was reconciled; a failure is retried by the iteration's full publish.)
pub async fn publish_as_written(
    store: &mut StoreSink,
    snapshot: &Snapshot,
    waves: &BTreeMap<String, WaveState>,
    written: futures::channel::mpsc::UnboundedReceiver<(usize, GovSystemStatus)>,
) -> bool {
    let mut batches = written.ready_chunks(256);
    let mut fenced = false;
    while let Some(batch) = batches.next().await {
        if fenced {
            continue;
        }
        let owned: Vec<&(usize, GovSystemStatus)> = batch.iter().filter(|(i, _)| snapshot.owned[*i]).collect();
        let records = owned.iter().map(|(i, st)| Record::System(snapshot.system_record(*i, st, waves))).collect();
        let sources: Vec<_> = owned.iter().map(|(i, st)| snapshot.journal_source(*i, st)).collect();
        fenced = store.publish_systems(records, &sources, snapshot.now).await.is_err();
    }
    fenced
}

/// What the report derived from the statuses after the writes.
#[derive(Debug)]
pub struct Reported {
    /// Every wave's state.
    pub waves: BTreeMap<String, WaveState>,
    /// The capacity accounts.
    pub accounts: Accounts,
    /// The publish failed (retried next iteration).
    pub failed: bool,
    /// This replica was fenced out of the store: another leads.
    pub fenced: bool,
}

/// Updates the metrics and publishes the whole read-model and the journal from `effective`
/// (the statuses after the writes). `started` is when the iteration began: the publish lag.
pub async fn publish(
    ctx: &Context,
    store: Option<&mut StoreSink>,
    snapshot: &Snapshot,
    effective: &[GovSystemStatus],
    plan: &Plan,
    run_out: &[suyun_planner::forecast::NodeRunOut],
    started: std::time::Instant,
) -> Reported {
    let objects = &snapshot.objects;
    let waves = snapshot.wave_states(effective);
    let mut accounts = accounts::compute(objects.systems.iter().map(AsRef::as_ref).zip(effective), &objects.tenants);
    if !objects.members.is_empty() {
        let tenant_of: std::collections::HashMap<&str, &str> = objects
            .systems
            .iter()
            .map(|s| (s.spec.system_id.as_str(), s.metadata.namespace.as_deref().unwrap_or_default()))
            .collect();
        let placed = plan.assignments.iter().map(|a| (a.system_id.as_str(), a.node.as_str()));
        accounts::add_planned(&mut accounts, placed, |id| tenant_of.get(id).copied());
    }
    accounts::add_lending(&mut accounts, plan);
    let metrics = &ctx.metrics;
    metrics.observe_loop(&crate::metrics::state::LoopState {
        cloud_nodes: &objects.cloud_nodes,
        tenants: &objects.tenants,
        systems: &objects.systems,
        statuses: effective,
        wave_of: &snapshot.wave_of,
        waves: &waves,
        accounts: &accounts,
        plan,
        run_out,
    });
    // A deleted node's gauges leave even when no CloudNode is left to reconcile.
    metrics.retain_nodes(&objects.cloud_nodes.iter().map(|n| n.name_any()).collect());
    let mut reported = Reported { waves, accounts, failed: false, fenced: false };
    let Some(store) = store else { return reported };
    let (records, built) = crate::readmodel::records(
        snapshot,
        effective,
        &reported.accounts,
        &reported.waves,
        plan,
        &crate::readmodel::RunOuts {
            nodes: run_out,
            growth_percent: ctx.config.forecast_growth_percent,
            horizon_days: ctx.config.forecast_horizon_days,
        },
        store.published_systems(),
    );
    let owned = || (0..objects.systems.len()).filter(|i| snapshot.owned[*i]);
    let present = owned().map(|i| objects.systems[i].spec.system_id.as_str()).collect();
    let sources: Vec<_> = owned().map(|i| snapshot.journal_source(i, &effective[i])).collect();
    let published = store.publish(records, built, &present, &sources, snapshot.now).await;
    let journaled = store.take_journaled();
    metrics.observe_journal(journaled.appended, journaled.missed);
    let committed_at = k8s_openapi::jiff::Timestamp::now().as_second();
    match published {
        Ok(true) => metrics.observe_publish(PublishOutcome::Committed { lag: started.elapsed() }, committed_at),
        Ok(false) => {
            reported.failed = true;
            metrics.observe_publish(PublishOutcome::Failed, committed_at);
        }
        Err(()) => {
            reported.failed = true;
            reported.fenced = true;
            metrics.observe_publish(PublishOutcome::Failed, committed_at);
        }
    }
    reported
}
