//! Blocking reads from async code: on tokio's blocking pool, but at most as many at once as the database has
//! connections to read with. More would only park pool threads on the connections' locks, and each parked
//! thread keeps a stack and an allocator arena: a thousand watchers starting at once made about ninety threads
//! where three read.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::store::Store;
use crate::{Error, Result};

/// The permits of one database's readers.
pub(crate) type Gate = Arc<Semaphore>;

pub(crate) fn gate(readers: usize) -> Gate {
    Arc::new(Semaphore::new(readers.max(1)))
}

impl Store {
    /// Run the blocking `f` (a read) off the executor once one of the database's readers is free.
    pub(crate) async fn off_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .inner
            .conns
            .gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Join(format!("{}: the readers' gate: {e}", self.name())))?;
        let s = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&s)
        })
        .await
        .map_err(|e| Error::Join(e.to_string()))?
    }
}
