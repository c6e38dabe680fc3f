//! Locking for the sandbox's in-memory state.

use std::sync::{Mutex, MutexGuard};

/// A poisoned lock only means another thread panicked mid-update of plain data that stays
/// readable; a simulator keeps going rather than failing every later call.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Resolves once the sandbox is shutting down (or its handle is gone).
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send, so it must not outlive this function.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
