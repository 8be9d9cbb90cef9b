//! Stage 1 of an iteration, the snapshot: the caches, and the overlay of statuses the loop
//! wrote that the caches do not show yet, become one view of the province at `now`. Everything
//! per system that more than one later stage needs is computed here, once: the effective
//! status and the resourceVersion it belongs to, the region, who owns each `systemId`, the
//! wave, the approvals in force.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use suyun_crds::v1alpha1::{GovSystem, GovSystemStatus};
use suyun_planner::model::PlanInput;
use suyun_store::readmodel::SystemRecord;
use tracing::warn;

use super::waves::{self, WaveState};
use crate::approvals::{self, Gathered};
use crate::identity::{self, Screening};
use crate::journal::Source;
use crate::plan_input::{self, Objects, PlannedSystem};
use crate::readmodel;
use crate::store::Approval;

/// A status the loop wrote, used until the cache shows it.
#[derive(Debug)]
struct Written {
    resource_version: Option<String>,
    status: GovSystemStatus,
}

/// The statuses the loop wrote that the caches may not show yet, by object uid: a quick next
/// iteration never acts on a stale phase.
#[derive(Debug, Default)]
pub struct Overlay(HashMap<String, Written>);

impl Overlay {
    /// The effective status of `system` and the resourceVersion it belongs to: what the loop
    /// last wrote, until the cache shows it (then the entry is dropped).
    fn effective(&mut self, system: &GovSystem) -> (GovSystemStatus, Option<String>) {
        let cached = system.status.clone().unwrap_or_default();
        let uid = system.uid().unwrap_or_default();
        match self.0.get(&uid) {
            Some(w) if w.resource_version != system.resource_version() && w.status != cached => {
                (w.status.clone(), w.resource_version.clone())
            }
            Some(_) => {
                self.0.remove(&uid);
                (cached, system.resource_version())
            }
            None => (cached, system.resource_version()),
        }
    }

    /// Remembers a status written to `system` (now at `resource_version`).
    pub fn remember(&mut self, system: &GovSystem, resource_version: Option<String>, status: GovSystemStatus) {
        self.0.insert(system.uid().unwrap_or_default(), Written { resource_version, status });
    }

    /// Entries remembered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The province as one iteration sees it. Indices `i` are positions in `objects.systems`.
#[derive(Debug)]
pub struct Snapshot {
    /// Unix seconds.
    pub now: i64,
    /// Every object, from the caches.
    pub objects: Objects,
    /// Effective status of each system: what the caches show or the loop last wrote (after the
    /// apply stage, including what it wrote: [`Snapshot::written`]).
    pub statuses: Vec<GovSystemStatus>,
    /// The resourceVersion each effective status belongs to (a write is conditional on it).
    pub versions: Vec<Option<String>>,
    /// Region code of each tenant (a system's Namespace).
    pub regions: HashMap<String, String>,
    /// Who owns each `systemId`, and which systems may not reach the planner.
    pub screening: Screening,
    /// Whether system `i` owns its `systemId`: only owners are planned, published, journaled
    /// and approved.
    pub owned: Vec<bool>,
    /// The wave of each system.
    pub wave_of: Vec<Option<String>>,
    /// The approvals in force, from the status store and the annotations.
    pub approvals: Gathered,
    /// The operator's Jobs, by cluster ("" for this one, else the CloudNode whose member
    /// cluster holds them), Namespace and name.
    pub jobs: HashMap<(String, String, String), Arc<Job>>,
}

/// The operator's Jobs as the caches hold them: this cluster's, and each member cluster's by
/// the CloudNode it backs.
#[derive(Debug, Default)]
pub struct ClusterJobs {
    /// Jobs in the operator's own cluster.
    pub own: Vec<Arc<Job>>,
    /// Jobs in member clusters, by CloudNode.
    pub members: HashMap<String, Vec<Arc<Job>>>,
}

impl From<Vec<Arc<Job>>> for ClusterJobs {
    fn from(own: Vec<Arc<Job>>) -> Self {
        ClusterJobs { own, members: HashMap::new() }
    }
}

impl Snapshot {
    /// Takes the snapshot at `now`; drops overlay entries of deleted systems and of statuses
    /// the caches caught up with.
    pub fn take(
        objects: Objects,
        jobs: impl Into<ClusterJobs>,
        overlay: &mut Overlay,
        store_approvals: &BTreeMap<String, Approval>,
        now: i64,
    ) -> Snapshot {
        let live: HashSet<String> = objects.systems.iter().filter_map(|s| s.uid()).collect();
        overlay.0.retain(|uid, _| live.contains(uid));
        let (statuses, versions): (Vec<_>, Vec<_>) = objects.systems.iter().map(|s| overlay.effective(s)).unzip();
        let regions = readmodel::regions(&objects.tenants);
        let screening = identity::screen(&objects.systems, |i| statuses[i].phase.unwrap_or_default(), &regions);
        let owned = objects.systems.iter().enumerate().map(|(i, s)| screening.owns(i, s)).collect::<Vec<_>>();
        let wave_of =
            objects.systems.iter().map(|s| plan_input::wave_of(s, &objects.waves).map(|w| w.name_any())).collect();
        let approvals = approvals::gather(&objects.systems, &owned, &regions, store_approvals);
        let ClusterJobs { own, members } = jobs.into();
        let key = |cluster: &str, j: &Job| (cluster.to_owned(), j.namespace().unwrap_or_default(), j.name_any());
        let mut jobs: HashMap<_, _> = own.into_iter().map(|j| (key("", &j), j)).collect();
        for (node, list) in members {
            jobs.extend(list.into_iter().map(|j| (key(&node, &j), j)));
        }
        Snapshot { now, objects, statuses, versions, regions, screening, owned, wave_of, approvals, jobs }
    }

    /// The planner's input, planned from the effective statuses, and the systems left out of
    /// it because their spec cannot be converted (by `namespace/name`: the field and the
    /// problem). Other objects left out are logged.
    pub fn plan_input(&self) -> (PlanInput, HashMap<String, String>) {
        let plannable = identity::plannable(&self.objects.systems, &self.screening);
        let systems = plannable.iter().map(|(i, system)| PlannedSystem {
            system,
            status: &self.statuses[*i],
            wave: self.wave_of[*i].clone(),
        });
        let (input, errors) = plan_input::input_of(&self.objects, systems, self.now);
        let mut invalid = HashMap::new();
        for e in errors {
            if e.kind == "GovSystem" {
                invalid.insert(e.name.clone(), format!("{}: {}", e.field, e.problem));
            } else {
                warn!(error = %e, "object left out of the plan");
            }
        }
        (input, invalid)
    }

    /// Takes the statuses the apply stage wrote (system index, new resourceVersion, status) into
    /// the snapshot and the overlay, calling `each(wave, before, after)` for every one first:
    /// from here on the snapshot shows what Kubernetes holds.
    pub fn written(
        &mut self,
        written: impl IntoIterator<Item = (usize, Option<String>, GovSystemStatus)>,
        overlay: &mut Overlay,
        mut each: impl FnMut(Option<&str>, &GovSystemStatus, &GovSystemStatus),
    ) {
        for (i, version, status) in written {
            each(self.wave_of[i].as_deref(), &self.statuses[i], &status);
            overlay.remember(&self.objects.systems[i], version.clone(), status.clone());
            self.versions[i] = version;
            self.statuses[i] = status;
        }
    }

    /// The region code of system `i`'s tenant ("" when the tenant is unknown).
    pub fn region(&self, i: usize) -> &str {
        let namespace = self.objects.systems[i].metadata.namespace.as_deref().unwrap_or_default();
        self.regions.get(namespace).map_or("", String::as_str)
    }

    /// The state of every wave, from the statuses given (the effective ones, or those after
    /// the writes).
    pub fn wave_states(&self, statuses: &[GovSystemStatus]) -> BTreeMap<String, WaveState> {
        waves::wave_states(&self.objects.waves, &waves::members(&self.wave_of, statuses), self.now)
    }

    /// The read-model record of system `i` with status `status`.
    pub fn system_record(
        &self,
        i: usize,
        status: &GovSystemStatus,
        waves: &BTreeMap<String, WaveState>,
    ) -> SystemRecord {
        let wave = self.wave_of[i].clone();
        let approval = readmodel::approval_required(wave.as_ref(), waves);
        readmodel::system(&self.objects.systems[i], status, self.region(i).to_owned(), wave, approval)
    }

    /// The journal's view of system `i`, whose transitions are `status`'s.
    pub fn journal_source<'a>(&'a self, i: usize, status: &'a GovSystemStatus) -> Source<'a> {
        let system = &self.objects.systems[i];
        Source {
            system_id: &system.spec.system_id,
            region_code: self.region(i),
            uid: system.metadata.uid.as_deref().unwrap_or_default(),
            transitions: &status.transitions,
        }
    }

    /// The Job named in system `i`'s effective status, if it exists: in the member cluster of
    /// the system's node when that node has one (its Jobs run where its data lands), else here.
    pub fn job(&self, i: usize) -> Option<&Job> {
        let name = self.statuses[i].job.as_ref()?;
        let namespace = self.objects.systems[i].namespace().unwrap_or_default();
        let cluster = self.member_of(i).unwrap_or_default().to_owned();
        self.jobs.get(&(cluster, namespace, name.clone())).map(Arc::as_ref)
    }

    /// The CloudNode whose member cluster runs system `i`'s Jobs, when its node has one.
    pub fn member_of(&self, i: usize) -> Option<&str> {
        let node = self.statuses[i].node.as_deref()?;
        self.objects.members.contains_key(node).then_some(node)
    }

    /// Why system `i`'s migration must pause now, if it must: its node's member cluster cannot
    /// be reached.
    pub fn paused(&self, i: usize) -> Option<String> {
        let node = self.member_of(i)?;
        self.objects.members[node].unreachable.then(|| {
            format!(
                "the member cluster of {node} cannot be reached: the migration pauses (nothing fails, no attempt is spent) and resumes by itself when it is back"
            )
        })
    }
}
