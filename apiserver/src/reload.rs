//! Files re-read while the server runs (the token file, the TLS files): one polling loop for
//! all of them.

use std::time::Duration;

/// Calls `reload` every `interval` until the task is aborted. A failure is logged with
/// `failure` when it first happens and again when its reason changes, not on every poll.
pub fn spawn(
    interval: Duration,
    failure: &'static str,
    reload: impl Fn() -> anyhow::Result<bool> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        let mut last_error = None;
        loop {
            ticks.tick().await;
            match reload() {
                Ok(_) => last_error = None,
                Err(e) => {
                    let error = format!("{e:#}");
                    if last_error.as_ref() != Some(&error) {
                        tracing::error!(error, "{failure}");
                        last_error = Some(error);
                    }
                }
            }
        }
    })
}
