//! A replica client whose every call ends, as `Cancelled`, when its token is cancelled: what makes a shutdown prompt
//! even while a store hangs (a request can wait out a long timeout, and its retries more).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::client::{ObjectClient, ObjectInfo, Replica};
use crate::error::ReplicaError;

impl Replica {
    /// This replica with every call bound to `cancel`: once it is cancelled, calls in flight and new ones end at
    /// once with [`ReplicaError::Cancelled`].
    pub fn cancellable(&self, cancel: CancellationToken) -> Self {
        self.clone().wrap_client(|client| Arc::new(CancellableClient::new(client, cancel)))
    }
}

#[derive(Debug)]
pub(crate) struct CancellableClient {
    inner: Arc<dyn ObjectClient>,
    cancel: CancellationToken,
}

impl CancellableClient {
    pub(crate) fn new(inner: Arc<dyn ObjectClient>, cancel: CancellationToken) -> Self {
        Self { inner, cancel }
    }

    /// `call`, unless the token is cancelled first (or already): then the call is dropped, which aborts its request.
    async fn race<T>(&self, call: impl Future<Output = Result<T, ReplicaError>>) -> Result<T, ReplicaError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(ReplicaError::Cancelled { replica: self.inner.describe() }),
            r = call => r,
        }
    }
}

#[async_trait]
impl ObjectClient for CancellableClient {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
        self.race(self.inner.list_dirs(prefix)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        self.race(self.inner.list(prefix)).await
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        self.race(self.inner.list_after(prefix, start_after)).await
    }

    async fn put_file(&self, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError> {
        self.race(self.inner.put_file(key, src, created)).await
    }

    async fn get_file(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError> {
        self.race(self.inner.get_file(key, dst)).await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError> {
        self.race(self.inner.delete(keys)).await
    }

    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::faults::{FaultConfig, FaultyClient};
    use crate::file::FileClient;

    #[tokio::test]
    async fn a_hung_call_ends_as_cancelled_when_the_token_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let faulty = Arc::new(FaultyClient::new(Arc::new(FileClient::new(dir.path())), FaultConfig::none()));
        let cancel = CancellationToken::new();
        let client = Arc::new(CancellableClient::new(faulty.clone(), cancel.clone()));
        assert_eq!(client.list("generations").await.expect("a listing"), vec![], "passes calls through");

        faulty.set_hang(true);
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.list("generations").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!call.is_finished(), "the store hangs");
        cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), call).await.expect("ends once cancelled");
        let e = result.expect("the task").expect_err("cancelled");
        assert!(matches!(e, ReplicaError::Cancelled { .. }), "{e:?}");
        let after = client.get_file("x", &dir.path().join("x")).await.expect_err("a cancelled client calls nothing");
        assert!(matches!(after, ReplicaError::Cancelled { .. }), "{after:?}");
    }
}
