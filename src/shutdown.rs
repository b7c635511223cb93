//! Shutdown as a value that every long-running task selects on
//! (mini-redis style): the gateway triggers it once, on SIGINT/SIGTERM or
//! when its handle asks, and every session closes with 1001.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

// A flag and a `Notify` rather than a `watch` channel: every session keeps
// a `wait()` future in its task for its whole life, and a
// `watch::Receiver::changed()` future is larger than a bare `Notified`
// (see `session`'s size test).
struct Inner {
    triggered: AtomicBool,
    /// Live `Trigger`s; when the last one is dropped, waiters resolve (as
    /// if shutdown had been triggered).
    triggers: AtomicUsize,
    notify: Notify,
}

/// Triggers shutdown for every [`Shutdown`] made from it.
pub struct Trigger(Arc<Inner>);

/// A task's view of the shutdown signal.
#[derive(Clone)]
pub struct Shutdown(Arc<Inner>);

pub fn channel() -> (Trigger, Shutdown) {
    let inner = Arc::new(Inner {
        triggered: AtomicBool::new(false),
        triggers: AtomicUsize::new(1),
        notify: Notify::new(),
    });
    (Trigger(inner.clone()), Shutdown(inner))
}

impl Trigger {
    pub fn trigger(&self) {
        self.0.triggered.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.clone())
    }
}

impl Clone for Trigger {
    fn clone(&self) -> Self {
        self.0.triggers.fetch_add(1, Ordering::SeqCst);
        Trigger(self.0.clone())
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        if self.0.triggers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.notify.notify_waiters();
        }
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        self.0.triggered.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has been triggered (at once if it already
    /// was), or once every [`Trigger`] is gone. Cancel-safe.
    ///
    /// Not an `async fn`, which would also keep `&mut self` in the future.
    pub fn wait(&mut self) -> impl Future<Output = ()> + Send + '_ {
        let inner = &*self.0;
        async move {
            loop {
                // A `Notified` sees every `notify_waiters` from its creation on,
                // polled or not, so a trigger between here and the check below
                // is not missed.
                let notified = inner.notify.notified();
                if inner.triggered.load(Ordering::SeqCst)
                    || inner.triggers.load(Ordering::SeqCst) == 0
                {
                    return;
                }
                notified.await;
            }
        }
    }
}

/// SIGINT and SIGTERM, listened for from the moment this is made: a
/// signal that arrives after [`signals`] returns stops the gateway cleanly
/// and is never the default action (which would end the process without
/// closing a session). Make it before telling anyone where to connect.
pub struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

/// Registers for SIGINT and SIGTERM now. Needs a Tokio runtime.
pub fn signals() -> Signals {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot listen for {name} ({e}); it ends the process unclean");
                None
            }
        };
        Signals {
            int: listen(SignalKind::interrupt(), "SIGINT"),
            term: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        Signals {}
    }
}

impl Signals {
    /// Resolves on the first SIGINT or SIGTERM after [`signals`].
    pub async fn recv(self) {
        #[cfg(unix)]
        {
            async fn one(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        // `None` only when the runtime's driver is gone.
                        if s.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = one(self.int) => {}
                _ = one(self.term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn resolves(s: &mut Shutdown) -> bool {
        tokio::time::timeout(Duration::from_millis(50), s.wait())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn wait_resolves_on_trigger_and_after_it() {
        let (t, mut s) = channel();
        let mut late = t.subscribe();
        assert!(!s.is_triggered());
        assert!(!resolves(&mut s).await);
        let waiter = tokio::spawn(async move { s.wait().await });
        tokio::task::yield_now().await;
        t.trigger();
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .is_ok());
        // Already triggered: at once, every time.
        assert!(late.is_triggered());
        assert!(resolves(&mut late).await);
        assert!(resolves(&mut late).await);
    }

    #[tokio::test]
    async fn wait_resolves_when_every_trigger_is_dropped() {
        let (t, mut s) = channel();
        let t2 = t.clone();
        drop(t);
        assert!(!resolves(&mut s).await);
        let waiter = tokio::spawn(async move { s.wait().await });
        tokio::task::yield_now().await;
        drop(t2);
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .is_ok());
    }
}
