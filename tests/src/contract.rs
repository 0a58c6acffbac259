//! The replica-client contract every backend keeps, as one suite: `run(&client)` on a client rooted at a fresh,
//! empty place. The layout above (`Replica`) relies on exactly these behaviours, whatever the store.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use litecar_replicate::ObjectClient;
use litecar_replicate::ReplicaError;

/// Larger than the S3 multipart part size (8 MiB), so stores that split uploads do so.
pub const LARGE: usize = 9 << 20;

fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

struct Suite<'a> {
    client: &'a dyn ObjectClient,
    scratch: &'a Path,
    n: u32,
}

impl Suite<'_> {
    fn fail(&self, what: &str) -> String {
        format!("{} ({}): {what}", self.client.describe(), self.client.kind())
    }

    async fn put(&mut self, key: &str, data: &[u8]) -> Result<(), String> {
        self.n += 1;
        let src = self.scratch.join(format!("src-{}", self.n));
        std::fs::write(&src, data).map_err(|e| self.fail(&format!("scratch: {e}")))?;
        let created = SystemTime::now() - Duration::from_secs(5);
        self.client.put_file(key, &src, created).await.map_err(|e| self.fail(&format!("put {key}: {e}")))
    }

    async fn get(&mut self, key: &str) -> Result<Result<Vec<u8>, ReplicaError>, String> {
        self.n += 1;
        let dst = self.scratch.join(format!("dst-{}", self.n));
        Ok(match self.client.get_file(key, &dst).await {
            Ok(n) => {
                let data = std::fs::read(&dst).map_err(|e| self.fail(&format!("scratch: {e}")))?;
                if data.len() as u64 != n {
                    return Err(self.fail(&format!("get {key} reported {n} bytes and wrote {}", data.len())));
                }
                Ok(data)
            }
            Err(e) => Err(e),
        })
    }

    async fn expect_content(&mut self, key: &str, want: &[u8]) -> Result<(), String> {
        match self.get(key).await? {
            Ok(d) if d == want => Ok(()),
            Ok(d) => Err(self.fail(&format!("get {key}: {} bytes, not the {} put", d.len(), want.len()))),
            Err(e) => Err(self.fail(&format!("get {key}: {e}"))),
        }
    }

    async fn expect_missing(&mut self, key: &str) -> Result<(), String> {
        match self.get(key).await? {
            Err(ReplicaError::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(&format!("get of missing {key}: not NotFound but {e}"))),
            Ok(_) => Err(self.fail(&format!("get of missing {key} succeeded"))),
        }
    }

    async fn names(&self, prefix: &str) -> Result<BTreeSet<String>, String> {
        let l = self.client.list(prefix).await.map_err(|e| self.fail(&format!("list {prefix}: {e}")))?;
        Ok(l.into_iter().map(|o| o.name).collect())
    }

    async fn dirs(&self, prefix: &str) -> Result<BTreeSet<String>, String> {
        let l = self.client.list_dirs(prefix).await.map_err(|e| self.fail(&format!("list dirs {prefix}: {e}")))?;
        Ok(l.into_iter().collect())
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Check the contract on `client` (rooted at an empty place); `scratch` is a local directory for file copies.
pub async fn run(client: &dyn ObjectClient, scratch: &Path) -> Result<(), String> {
    let mut s = Suite { client, scratch, n: 0 };
    let (ga, gb) = ("generations/00000000000000aa", "generations/00000000000000bb");

    // Nothing there yet: empty listings, not errors.
    if !s.dirs("generations").await?.is_empty() || !s.names(&format!("{ga}/wal")).await?.is_empty() {
        return Err(s.fail("a fresh replica lists something"));
    }
    let after = client.list_after(&format!("{ga}/wal"), "").await.map_err(|e| s.fail(&e.to_string()))?;
    if !after.is_empty() {
        return Err(s.fail("list_after on a fresh replica lists something"));
    }
    s.expect_missing(&format!("{ga}/wal/00000000_00000000.wal.lz4")).await?;

    // Round trip, with sizes and timestamps in the listing.
    let seg = |i: u32| format!("{ga}/wal/00000000_{i:08x}.wal.lz4");
    let small = content(1000, 1);
    s.put(&seg(0), &small).await?;
    s.expect_content(&seg(0), &small).await?;
    let listed = client.list(&format!("{ga}/wal")).await.map_err(|e| s.fail(&e.to_string()))?;
    let [one] = listed.as_slice() else { return Err(s.fail(&format!("listing after one put: {listed:?}"))) };
    if one.name != "00000000_00000000.wal.lz4" || one.size != small.len() as u64 {
        return Err(s.fail(&format!("listed {one:?}")));
    }
    let age = SystemTime::now().duration_since(one.modified).unwrap_or_default();
    if age > Duration::from_secs(3600) {
        return Err(s.fail(&format!("object timestamp {:?} is not recent", one.modified)));
    }

    // An empty object, and a key written again holds the new bytes.
    s.put(&seg(0x20), &[]).await?;
    s.expect_content(&seg(0x20), &[]).await?;
    let again = content(700, 2);
    s.put(&seg(0), &again).await?;
    s.expect_content(&seg(0), &again).await?;

    // Listing: direct children only, sub-directories separately, and `list_after` starts past a name.
    s.put(&format!("{ga}/snapshots/00000000.snapshot.lz4"), &small).await?;
    s.put(&format!("{gb}/wal/00000001_00000000.wal.lz4"), &small).await?;
    s.put(&seg(0x40), &small).await?;
    if s.dirs("generations").await? != set(&["00000000000000aa", "00000000000000bb"]) {
        return Err(s.fail(&format!("generation directories: {:?}", s.dirs("generations").await?)));
    }
    if s.dirs(ga).await? != set(&["snapshots", "wal"]) || !s.names(ga).await?.is_empty() {
        return Err(s.fail(&format!("{ga}: dirs {:?}, files {:?}", s.dirs(ga).await?, s.names(ga).await?)));
    }
    let wal = s.names(&format!("{ga}/wal")).await?;
    if wal != set(&["00000000_00000000.wal.lz4", "00000000_00000020.wal.lz4", "00000000_00000040.wal.lz4"]) {
        return Err(s.fail(&format!("wal listing {wal:?}")));
    }
    let after = client
        .list_after(&format!("{ga}/wal"), "00000000_00000020.wal.lz4")
        .await
        .map_err(|e| s.fail(&e.to_string()))?;
    let after: Vec<String> = after.into_iter().map(|o| o.name).collect();
    if after != ["00000000_00000040.wal.lz4"] {
        return Err(s.fail(&format!("list_after: {after:?}")));
    }

    // Large objects, past the multipart part size.
    let big = content(LARGE, 3);
    let big_key = format!("{gb}/snapshots/00000001.snapshot.lz4");
    s.put(&big_key, &big).await?;
    s.expect_content(&big_key, &big).await?;

    // Deletes: missing keys are fine, deleted keys are NotFound, a deleted generation lists no more.
    client
        .delete(&[seg(0), format!("{ga}/wal/7fffffff_00000000.wal.lz4")])
        .await
        .map_err(|e| s.fail(&format!("delete with a missing key: {e}")))?;
    s.expect_missing(&seg(0)).await?;
    client.delete(&[]).await.map_err(|e| s.fail(&format!("empty delete: {e}")))?;
    let rest = vec![seg(0x20), seg(0x40), format!("{ga}/snapshots/00000000.snapshot.lz4")];
    client.delete(&rest).await.map_err(|e| s.fail(&format!("delete: {e}")))?;
    if !s.names(&format!("{ga}/wal")).await?.is_empty() {
        return Err(s.fail("deleted objects still listed"));
    }
    if s.dirs("generations").await?.contains("00000000000000aa") && !s.dirs(ga).await?.is_empty() {
        let left = s.names(&format!("{ga}/snapshots")).await?;
        if !left.is_empty() {
            return Err(s.fail(&format!("a deleted generation still has {left:?}")));
        }
    }
    client
        .delete(&[big_key, format!("{gb}/wal/00000001_00000000.wal.lz4")])
        .await
        .map_err(|e| s.fail(&format!("delete: {e}")))?;
    Ok(())
}
