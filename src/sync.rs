//! Locks that shrug off poisoning (as tokio's `loom/std/mutex.rs` does).
//!
//! A std lock is poisoned when a thread panics while holding it. Every
//! lock in this crate guards plain data that stays usable after such a
//! panic (counters, lists, a parked session's buffers), and a gateway must
//! keep serving everyone else, so `lock` hands the data over either way
//! instead of making each caller handle a `PoisonError`.
//!
//! These are std locks, not async ones: no caller holds one across an
//! `.await`, only for a few loads and stores.

use std::sync::{PoisonError, TryLockError};

pub(crate) use std::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

/// A `std::sync::Mutex` whose `lock` never fails.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }
}

impl<T: ?Sized> Mutex<T> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if it is free now, `None` if another thread holds it.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// A `std::sync::RwLock` whose `read` and `write` never fail.
#[derive(Debug, Default)]
pub(crate) struct RwLock<T: ?Sized>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        RwLock(std::sync::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_panic_while_locked_leaves_the_data_usable() {
        let m = Arc::new(Mutex::new(vec![1]));
        let l = Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let r = std::thread::spawn(move || {
            let _g = m2.lock();
            let _w = l2.write();
            panic!("poison both");
        })
        .join();
        assert!(r.is_err());
        m.lock().push(2);
        assert_eq!(*m.lock(), [1, 2]);
        assert_eq!(m.try_lock().map(|g| g.len()), Some(2));
        *l.write() += 1;
        assert_eq!(*l.read(), 2);
    }

    #[test]
    fn try_lock_says_when_held() {
        let m = Mutex::new(0);
        let g = m.lock();
        assert!(m.try_lock().is_none());
        drop(g);
        assert!(m.try_lock().is_some());
    }
}
