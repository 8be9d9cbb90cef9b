//! Builds the Kubernetes Job that runs one phase of one system's migration, from its wave's
//! `runner` template. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec, SecurityContext};
use kube::Resource;
use kube::api::ObjectMeta;
use suyun_crds::v1alpha1::{GovSystem, MANAGED_BY, MANAGED_BY_LABEL, PHASE_LABEL, Runner, SYSTEM_ID_LABEL};

use super::step::JobPhase;

/// Label on a migration Job: the attempt number.
pub const ATTEMPT_LABEL: &str = "suyun.io/attempt";

/// The runner's command and timeout for a phase, after per-phase overrides.
pub fn command_and_timeout(runner: &Runner, phase: JobPhase) -> (Vec<String>, u32) {
    let over = runner.phases.as_ref().and_then(|p| match phase {
        JobPhase::Provisioning => p.provisioning.as_ref(),
        JobPhase::Replicating => p.replicating.as_ref(),
        JobPhase::CuttingOver => p.cutting_over.as_ref(),
        JobPhase::Verifying => p.verifying.as_ref(),
        JobPhase::Rollback => p.rollback.as_ref(),
    });
    let command = over.filter(|o| !o.command.is_empty()).map_or_else(|| runner.command.clone(), |o| o.command.clone());
    let timeout = over.and_then(|o| o.timeout_seconds).unwrap_or(runner.timeout_seconds);
    (command, timeout)
}

/// The Job for `phase`, attempt `attempt`, of `system`, to run on `node`: in the system's
/// Namespace, owned by the GovSystem (deleting the system deletes its Jobs), labelled, with the
/// `SUYUN_*` environment. The operator retries failed attempts itself, so the Job does not
/// (`backoffLimit: 0`).
pub fn build(system: &GovSystem, runner: &Runner, phase: JobPhase, attempt: u32, name: &str, node: &str) -> Job {
    let (command, timeout) = command_and_timeout(runner, phase);
    let namespace = system.metadata.namespace.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (SYSTEM_ID_LABEL.to_owned(), system.spec.system_id.clone()),
        (PHASE_LABEL.to_owned(), phase.as_str().to_owned()),
        (ATTEMPT_LABEL.to_owned(), attempt.to_string()),
    ]);
    let var = |name: &str, value: &str| EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() };
    let mut env = vec![
        var("SUYUN_SYSTEM_ID", &system.spec.system_id),
        var("SUYUN_PHASE", phase.env_value()),
        var("SUYUN_TARGET_NODE", node),
        var("SUYUN_TENANT", &namespace),
        var("SUYUN_ATTEMPT", &attempt.to_string()),
    ];
    env.extend(runner.env.iter().cloned());
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            owner_references: system.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(i64::from(timeout)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "runner".into(),
                        image: Some(runner.image.clone()),
                        command: (!command.is_empty()).then_some(command),
                        env: Some(env),
                        security_context: Some(SecurityContext {
                            allow_privilege_escalation: Some(false),
                            run_as_non_root: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether a Job finished, and how.
/// State of the Job named in `status.job`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not found (not created yet, or deleted).
    Missing,
    /// Created, not finished.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully; the message says how.
    Failed(String),
}

pub fn state(job: Option<&Job>) -> JobState {
    let Some(job) = job else { return JobState::Missing };
    let status = job.status.clone().unwrap_or_default();
    let condition = |t: &str| status.conditions.iter().flatten().find(|c| c.type_ == t && c.status == "True").cloned();
    if status.succeeded.unwrap_or(0) > 0 || condition("Complete").is_some() {
        JobState::Succeeded
    } else if let Some(c) = condition("Failed") {
        JobState::Failed(c.message.or(c.reason).unwrap_or_else(|| "Failed".into()))
    } else if status.failed.unwrap_or(0) > 0 {
        JobState::Failed(format!("{} pod(s) failed", status.failed.unwrap_or(0)))
    } else {
        JobState::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyun_crds::v1alpha1::{PhaseOverride, PhaseOverrides};

    fn runner() -> Runner {
        Runner {
            image: "runner:1".into(),
            command: vec!["/run".into()],
            env: vec![EnvVar { name: "X".into(), value: Some("1".into()), ..Default::default() }],
            timeout_seconds: 100,
            phases: Some(PhaseOverrides {
                replicating: Some(PhaseOverride { command: vec![], timeout_seconds: Some(900) }),
                rollback: Some(PhaseOverride { command: vec!["/undo".into()], timeout_seconds: None }),
                ..Default::default()
            }),
        }
    }

    fn system() -> GovSystem {
        let spec: suyun_crds::v1alpha1::GovSystemSpec = serde_json::from_value(serde_json::json!({
            "systemId": "JS-320100-0001", "displayName": "x", "classification": "Internal", "securityLevel": 2,
            "resources": {"cpu": "1", "memory": "1Gi", "storage": "1Gi"}
        }))
        .unwrap();
        let mut s = GovSystem::new("js-320100-0001", spec);
        s.metadata.namespace = Some("nanjing-data".into());
        s.metadata.uid = Some("uid-1".into());
        s
    }

    #[test]
    fn overrides_apply_per_phase() {
        assert_eq!(command_and_timeout(&runner(), JobPhase::Provisioning), (vec!["/run".to_owned()], 100));
        assert_eq!(command_and_timeout(&runner(), JobPhase::Replicating), (vec!["/run".to_owned()], 900));
        assert_eq!(command_and_timeout(&runner(), JobPhase::Rollback), (vec!["/undo".to_owned()], 100));
    }

    #[test]
    fn the_job_is_owned_labelled_and_carries_the_environment() {
        let job = build(&system(), &runner(), JobPhase::Replicating, 1, "js-320100-0001-replicating-1", "nanjing");
        assert_eq!(job.metadata.namespace.as_deref(), Some("nanjing-data"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("GovSystem", "uid-1", Some(true)));
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SYSTEM_ID_LABEL], "JS-320100-0001");
        assert_eq!(labels[PHASE_LABEL], "replicating");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(900));
        let env = spec.template.spec.unwrap().containers[0].env.clone().unwrap();
        let get = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
        assert_eq!(get("SUYUN_PHASE").as_deref(), Some("Replicating"));
        assert_eq!(get("SUYUN_TARGET_NODE").as_deref(), Some("nanjing"));
        assert_eq!(get("SUYUN_TENANT").as_deref(), Some("nanjing-data"));
        assert_eq!(get("X").as_deref(), Some("1"));
    }
}
