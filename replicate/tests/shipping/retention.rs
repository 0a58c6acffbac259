use std::sync::Arc;
use std::time::{Duration, SystemTime};

use litecar_replicate::test_utils::enforce_retention as enforce;
use litecar_replicate::test_utils::layout;
use litecar_replicate::{FileClient, Replica};
use litecar_replicate::{Generation, Pos};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn put(replica: &Replica, key: &str, age: Duration) {
    let src = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(src.path(), b"x").expect("write");
    let when = SystemTime::now() - age;
    rt().block_on(replica.client.put_file(key, src.path(), when)).expect("put");
}

#[test]
fn retention_keeps_the_window_and_the_newest_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = Replica::new("file", Arc::new(FileClient::new(dir.path())));
    let hour = Duration::from_secs(3600);
    let old = Generation::parse("00000000000000aa").expect("gen");
    let cur = Generation::parse("00000000000000bb").expect("gen");
    // An old generation entirely outside the window.
    put(&replica, &layout::snapshot_key(&old, 0), 50 * hour);
    put(&replica, &layout::wal_segment_key(&old, Pos { index: 0, offset: 0 }), 49 * hour);
    // The current generation: snapshots at index 0 (30h old), 3 (10h old), 6 (1h old); segments for each index.
    for (index, age) in [(0, 30), (3, 10), (6, 1)] {
        put(&replica, &layout::snapshot_key(&cur, index), age * hour);
    }
    for index in 0..8 {
        put(&replica, &layout::wal_segment_key(&cur, Pos { index, offset: 0 }), hour);
    }

    let report = rt().block_on(enforce(&replica, &cur, 24 * hour, SystemTime::now())).expect("enforce");
    assert_eq!(report.generations_deleted, 1);
    assert_eq!(report.snapshots_deleted, 1);
    assert_eq!(report.segments_deleted, 3);
    let gens = rt().block_on(replica.generations()).expect("gens");
    assert_eq!(gens, vec![cur.clone()]);
    let snaps: Vec<u32> = rt().block_on(replica.snapshots(&cur)).expect("snaps").iter().map(|s| s.index).collect();
    assert_eq!(snaps, vec![3, 6]);

    // A window shorter than every snapshot's age still keeps the newest snapshot and what follows it.
    rt().block_on(enforce(&replica, &cur, Duration::from_secs(60), SystemTime::now())).expect("enforce");
    let snaps: Vec<u32> = rt().block_on(replica.snapshots(&cur)).expect("snaps").iter().map(|s| s.index).collect();
    assert_eq!(snaps, vec![6]);
    let segs = rt().block_on(replica.segments(&cur)).expect("segs");
    assert_eq!(segs.iter().map(|s| s.pos.index).collect::<Vec<_>>(), vec![6, 7]);
}
