//! Leader election with a Kubernetes Lease (`kube-lease-manager`): several replicas run, one
//! leads and reconciles, the others wait. A leader that stops renewing (crashed, partitioned)
//! loses the Lease after `--lease-duration-seconds` and a standby takes over; a leader shutting
//! down cleanly releases it at once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::config::Config;

/// This replica's view of the leadership.
#[derive(Debug)]
pub struct Leadership {
    /// `true` while this replica holds the Lease.
    pub is_leader: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Leadership {
    /// Starts campaigning for the Lease in the background.
    pub async fn campaign(client: Client, config: &Config) -> anyhow::Result<Self> {
        let duration = config.lease_duration_seconds.max(2);
        let manager = LeaseManagerBuilder::new(client, &config.lease_name)
            .with_namespace(&config.lease_namespace)
            .with_identity(&config.instance)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await?;
        let (is_leader, task) = manager.watch().await;
        Ok(Self { is_leader, task })
    }

    /// Waits until this replica leads; `false` if the campaign ended first.
    pub async fn acquired(&mut self) -> bool {
        self.is_leader.wait_for(|leading| *leading).await.is_ok()
    }

    /// Waits until this replica stops leading.
    pub async fn lost(&mut self) {
        let _ = self.is_leader.wait_for(|leading| !*leading).await;
    }

    /// Stops campaigning and releases the Lease if held, so a standby takes over at once.
    pub async fn release(self) {
        drop(self.is_leader);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("leader Lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "leader election task failed"),
        }
    }
}
