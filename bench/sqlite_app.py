#!/usr/bin/env python3
"""A small SQLite application, as a user would write one, for the tests and benchmarks of what an application does
beside a replicator: writer threads insert rows at a steady pace, a timer thread runs the application's own
checkpoints, and optional operations run now and then (VACUUM, VACUUM INTO, a long read transaction, a switch to
journal_mode=DELETE and back). Every write and checkpoint is timed; a JSON summary goes to stdout.

Each committed row is recorded in the database itself (table `log`), so a restore can be compared with the source,
and a row is written just before each checkpoint of the application (`kind = 'before-checkpoint'`).

Usage: sqlite_app.py DB [--writers N] [--every-ms MS] [--seconds S] [--busy-ms MS] [--checkpoint MODE]
                        [--checkpoint-every-ms MS] [--ops vacuum,vacuum_into,long_read,journal_switch]
                        [--ops-every-ms MS] [--synchronous off|normal|full] [--autocheckpoint N] [--seed N]
                        [--writer-id-base N]
"""
import argparse
import json
import os
import random
import sqlite3
import sys
import threading
import time


def connect(args):
    c = sqlite3.connect(args.db, isolation_level=None, timeout=args.busy_ms / 1000, check_same_thread=False)
    c.execute(f"PRAGMA busy_timeout={args.busy_ms}")
    c.execute(f"PRAGMA synchronous={args.synchronous}")
    if args.autocheckpoint is not None:
        c.execute(f"PRAGMA wal_autocheckpoint={args.autocheckpoint}")
    return c


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.write_ms = []
        self.write_errors = []
        self.checkpoints = []  # (mode, busy, ms, error)
        self.ops = []  # (op, ms, error)

    def summary(self, seconds):
        w = sorted(self.write_ms)
        pct = lambda p: w[min(len(w) - 1, int(len(w) * p))] if w else 0.0
        ok = [c for c in self.checkpoints if c[1] == 0 and c[3] is None]
        return {
            "seconds": seconds,
            "writes": len(w),
            "writes_per_second": len(w) / seconds if seconds else 0.0,
            "write_p50_ms": pct(0.50),
            "write_p99_ms": pct(0.99),
            "write_max_ms": w[-1] if w else 0.0,
            "write_errors": len(self.write_errors),
            "write_error_messages": sorted(set(self.write_errors))[:5],
            "checkpoints": len(self.checkpoints),
            "checkpoints_ok": len(ok),
            "checkpoint_max_ms": max((c[2] for c in self.checkpoints), default=0.0),
            "checkpoint_ok_max_ms": max((c[2] for c in ok), default=0.0),
            "checkpoint_errors": sorted({c[3] for c in self.checkpoints if c[3]})[:5],
            "ops": [{"op": o, "ms": ms, "error": e} for o, ms, e in self.ops],
        }


def writer(args, wid, stop, stats, rng):
    try:
        c = connect(args)
    except sqlite3.Error as e:
        # A writer that cannot even start is an application error too, not a thread that silently writes nothing.
        with stats.lock:
            stats.write_errors.append(f"connect: {e}")
        return
    seq = 0
    next_at = time.monotonic()
    while not stop.is_set():
        next_at += args.every_ms / 1000
        seq += 1
        t0 = time.monotonic()
        try:
            c.execute(
                "INSERT INTO log(writer, seq, kind, payload) VALUES (?, ?, 'row', randomblob(?))",
                (wid, seq, rng.randint(10, 400)),
            )
            with stats.lock:
                stats.write_ms.append((time.monotonic() - t0) * 1000)
        except sqlite3.Error as e:
            with stats.lock:
                stats.write_errors.append(str(e))
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    c.close()


def checkpointer(args, stop, stats):
    c = connect(args)
    seq = 0
    while not stop.wait(args.checkpoint_every_ms / 1000):
        seq += 1
        try:
            # A row committed just before the checkpoint: it must reach the replica although the checkpoint restarts
            # the WAL right after it.
            c.execute("INSERT INTO log(writer, seq, kind, payload) VALUES (-1, ?, 'before-checkpoint', x'')", (seq,))
        except sqlite3.Error as e:
            with stats.lock:
                stats.write_errors.append(str(e))
        t0 = time.monotonic()
        busy, err = 1, None
        try:
            busy = c.execute(f"PRAGMA wal_checkpoint({args.checkpoint})").fetchone()[0]
        except sqlite3.Error as e:
            err = str(e)
        with stats.lock:
            stats.checkpoints.append((args.checkpoint, busy, (time.monotonic() - t0) * 1000, err))
    c.close()


def operations(args, stop, stats, rng):
    ops = [o for o in args.ops.split(",") if o]
    c = connect(args)
    n = 0
    while ops and not stop.wait(args.ops_every_ms / 1000 * (0.5 + rng.random())):
        op = rng.choice(ops)
        n += 1
        t0 = time.monotonic()
        err = None
        try:
            if op == "vacuum":
                c.execute("VACUUM")
            elif op == "vacuum_into":
                out = f"{args.db}.into-{os.getpid()}-{n}"
                c.execute("VACUUM INTO ?", (out,))
                os.remove(out)
            elif op == "long_read":
                c.execute("BEGIN")
                c.execute("SELECT count(*) FROM log").fetchone()
                stop.wait(min(1.0, args.ops_every_ms / 1000))
                c.execute("COMMIT")
            elif op == "journal_switch":
                mode = c.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
                if mode.lower() == "delete":
                    c.execute("INSERT INTO log(writer, seq, kind, payload) VALUES (-2, ?, 'in-delete-mode', x'')", (n,))
                mode2 = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode2.lower() != "wal":
                    err = f"could not switch back to WAL (journal_mode is {mode2})"
                elif mode.lower() != "delete":
                    err = f"could not switch to DELETE (journal_mode stayed {mode})"
            elif op == "update":
                c.execute("UPDATE log SET payload = randomblob(50) WHERE id IN (SELECT id FROM log ORDER BY random() LIMIT 20)")
            elif op == "delete":
                c.execute("DELETE FROM log WHERE id IN (SELECT id FROM log WHERE kind = 'row' ORDER BY random() LIMIT 20)")
            else:
                err = f"unknown operation {op}"
        except sqlite3.Error as e:
            err = f"{op}: {e}"
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        with stats.lock:
            stats.ops.append((op, (time.monotonic() - t0) * 1000, err))
    c.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("--writers", type=int, default=2)
    p.add_argument("--every-ms", type=float, default=5)
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--busy-ms", type=int, default=5000)
    p.add_argument("--checkpoint", default="TRUNCATE")
    p.add_argument("--checkpoint-every-ms", type=float, default=500)
    p.add_argument("--ops", default="")
    p.add_argument("--ops-every-ms", type=float, default=1000)
    p.add_argument("--synchronous", default="NORMAL")
    p.add_argument("--autocheckpoint", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--writer-id-base", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    c = connect(args)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(
        "CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, seq INTEGER NOT NULL, "
        "kind TEXT NOT NULL, payload BLOB NOT NULL)"
    )
    c.close()
    stop = threading.Event()
    stats = Stats()
    threads = [
        threading.Thread(target=writer, args=(args, args.writer_id_base + i, stop, stats, random.Random(rng.random())))
        for i in range(args.writers)
    ]
    if args.checkpoint_every_ms > 0 and args.checkpoint.lower() != "none":
        threads.append(threading.Thread(target=checkpointer, args=(args, stop, stats)))
    threads.append(threading.Thread(target=operations, args=(args, stop, stats, random.Random(rng.random()))))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join()
    json.dump(stats.summary(time.monotonic() - t0), sys.stdout)
    print()


if __name__ == "__main__":
    main()
