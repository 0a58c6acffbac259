#!/usr/bin/env python3
"""Count what litecar's checkpoints cost at a steady write rate: fsyncs (of the WAL, of the database file, of the
spool), checkpoint rounds, WAL segments and holds of the write lock. Counts, not times, so that it can run on a
loaded machine and in a debug build.

The writer is the one of the lag scenario of replication.py (one small transaction every 2 ms, `synchronous=NORMAL`);
litecar runs `replicate DB file://REPLICA` at its defaults under `strace -f` (fsyncs, with the path of each file)
and with debug logs for its shipper (rounds and write-lock holds).

Usage:  python3 bench/checkpoint_counts.py [--seconds 20] [--rate 500] [--bin target/debug/litecar]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replication import REPO, mkdtemp, open_writer, rmtree  # noqa: E402

FSYNC = re.compile(r"(fsync|fdatasync)\((\d+)<([^>]*)>")


def classify(path: str, db: Path) -> str:
    if path == str(db) + "-wal":
        return "wal"
    if path == str(db):
        return "db"
    return "spool and replica"


def run(binary: str, seconds: float, rate: int) -> dict:
    work = mkdtemp("counts")
    db, replica = work / "app.db", work / "replica"
    p = None
    try:
        c = open_writer(db)
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, v TEXT NOT NULL)")
        env = dict(os.environ, RUST_LOG="warn,litecar_replicate::shipper=debug", NO_COLOR="1")
        trace, logfile = work / "strace.out", work / "litecar.log"
        cmd = ["strace", "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(trace)]
        cmd += [binary, "replicate", str(db), f"file://{replica}"]
        with open(logfile, "wb") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120
        while not list(replica.rglob("*.snapshot.lz4")):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError(f"no snapshot; log:\n{logfile.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        tracee = int(Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()[0])
        # Only what the writes cost: the start-up's fsyncs are left out.
        skip = len(trace.read_text(errors="replace").splitlines())
        n = int(seconds * rate)
        period = 1_000_000_000 // rate
        wal, largest_wal = db.with_name("app.db-wal"), 0
        t0 = time.monotonic_ns()
        for seq in range(1, n + 1):
            due = t0 + seq * period
            now = time.monotonic_ns()
            if due > now:
                time.sleep((due - now) / 1e9)
            c.execute("INSERT INTO t(id, ts, v) VALUES(?, ?, ?)", (seq, time.time_ns(), f"SEQ:{seq:010d};" + "x" * 64))
            if seq % 100 == 0:
                largest_wal = max(largest_wal, wal.stat().st_size)
        wall = (time.monotonic_ns() - t0) / 1e9
        time.sleep(2.0)
        segments = len(list(replica.rglob("*.wal.lz4")))
        lines = trace.read_text(errors="replace").splitlines()[skip:]
        fsyncs = collections.Counter(classify(m.group(3), db) for ln in lines if (m := FSYNC.search(ln)))
        # To litecar itself: strace holds the signal back from its tracee.
        os.kill(tracee, signal.SIGTERM)
        p.wait(timeout=120)
        c.close()
        text = logfile.read_text(errors="replace")
        return {
            "binary": binary,
            "tx": n,
            "tx_per_s": round(n / wall, 1),
            "largest_wal_file_frames": max(0, largest_wal - 32) // (24 + 4096),
            "fsyncs": dict(fsyncs),
            "segments_in_replica": segments,
            "rounds": text.count("checkpoint round without the write lock"),
            "rounds_sealed": text.count("checkpoint without the write lock over sealed=true"),
            "checkpoints_under_the_write_lock": text.count("checkpoint under the write lock"),
            "write_lock_holds": text.count("write lock released"),
            "generations_started_after_the_first": text.count("starting a new generation") - 1,
        }
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        rmtree(work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--bin", default=str(REPO / "target" / "debug" / "litecar"))
    args = ap.parse_args()
    if not shutil.which("strace"):
        sys.exit("strace is required")
    print(json.dumps(run(args.bin, args.seconds, args.rate), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
