//! Shutdown as a value that every long-running task selects on
//! (mini-redis style): the gateway triggers it once, on SIGINT/SIGTERM or
//! when its handle asks, and every session closes with 1001.

use tokio::sync::watch;

/// Triggers shutdown for every [`Shutdown`] made from it.
#[derive(Clone)]
pub struct Trigger(watch::Sender<bool>);

/// A task's view of the shutdown signal.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been triggered (at once if it already
    /// was). Cancel-safe.
    pub async fn wait(&mut self) {
        // Err means every Trigger was dropped: treat as shutdown.
        let _ = self.0.wait_for(|v| *v).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the gateway");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
