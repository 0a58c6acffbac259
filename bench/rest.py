#!/usr/bin/env python3
"""Load test of litecar's REST table API with wrk, beside datasette and a static floor.

Setup
  A SQLite database with users(id INTEGER PRIMARY KEY, name TEXT, age INTEGER, city TEXT), 1,000,000 rows, an index
  on (city, age), 50 cities. `litecar serve -config CFG` serves it on loopback with JWT (HS256) auth on; the token is
  a `reader` role token (read-only) signed with the secret file's bytes. The metrics listener (`addr:`) gives the
  static `/healthz` floor of the same HTTP stack. datasette (no auth: it has none) serves the same file.

Requests (wrk Lua scripts, a random id / city per request)
  point  litecar   GET /users?id=eq.N                                  Authorization: Bearer TOKEN
         datasette GET /bench/users.json?id=N&_shape=array
  list   litecar   GET /users?city=eq.CITY&order=age.desc&limit=100    Authorization: Bearer TOKEN
         datasette GET /bench/users.json?city=CITY&_sort_desc=age&_size=100&_shape=array
  floor  litecar   GET /healthz on the metrics listener (static "ok")
  plain  litecar   GET /customers?limit=50&offset=N                        (a page of 50 customers)
  embed  litecar   GET /customers?select=*,orders(*)&limit=50&offset=N     (the same page, each with its 10 orders)
  (plain and embed use customers(id, name, email) with CUSTOMERS rows and orders(id, customer_id, status, total,
  created) with 10 rows per customer and an index on customer_id, in the same database file.)

Every (target, request) pair runs under each wrk configuration (-t1/-t2 x -c16/-c32), one run at a time, after a
short warm-up. For each run: req/s, p50/p99 latency (wrk --latency), non-2xx count, CPU seconds of the server and of
wrk (so the split of the 2 cores is visible), server CPU microseconds per request, and the 1-minute load average
before the run.

Requirements: wrk (apt-get install -y wrk), the litecar release binary (cargo build --release --bins), datasette
(pip install datasette; plugins are disabled with DATASETTE_LOAD_PLUGINS= so a broken plugin cannot stop it).

Usage:  python3 bench/rest.py [--duration 10] [--configs 1x16,1x32,2x16,2x32] [--only litecar,embed,datasette,floor]
                              [--rows 1000000] [--json out.json] [--keep]
Uses and removes /tmp/litecar-bench-rest-*; kills every process it started (also on SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LITECAR = Path(os.environ.get("LITECAR_BIN", ROOT / "target/release/litecar"))
CITIES = [f"city{i:02d}" for i in range(50)]
CUSTOMERS = 10_000
ORDERS_PER_CUSTOMER = 10
TICK = os.sysconf("SC_CLK_TCK")

procs: list[subprocess.Popen] = []


def cleanup_procs() -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_token(secret: bytes) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64url(json.dumps({"role": "reader", "exp": int(time.time()) + 3600}, separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode()
    sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(sig)}"


def make_db(path: Path, rows: int) -> None:
    t0 = time.monotonic()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, age INTEGER, city TEXT)")
    rng = random.Random(42)
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO users(id, name, age, city) VALUES (?, ?, ?, ?)",
        ((i, f"user{i}", rng.randint(18, 90), rng.choice(CITIES)) for i in range(1, rows + 1)),
    )
    con.execute("CREATE INDEX users_city_age ON users(city, age)")
    con.execute("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT)")
    con.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), "
                "status TEXT, total REAL, created TEXT)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                    ((i, f"customer {i}", f"c{i}@example.com") for i in range(1, CUSTOMERS + 1)))
    con.executemany(
        "INSERT INTO orders(customer_id, status, total, created) VALUES (?, ?, ?, ?)",
        ((c, rng.choice(["open", "paid", "void"]), round(rng.uniform(1, 500), 2), "2026-01-01T00:00:00Z")
         for c in range(1, CUSTOMERS + 1) for _ in range(ORDERS_PER_CUSTOMER)),
    )
    con.execute("CREATE INDEX orders_customer ON orders(customer_id)")
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    print(f"db: {rows} rows in {time.monotonic() - t0:.1f} s, {path.stat().st_size / 1e6:.0f} MB", flush=True)


def wait_http(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited with {p.returncode}")
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.read()
        except Exception as e:  # noqa: BLE001
            last = e
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready: {last}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (all threads)


def lua_script(path: Path, kind: str, flavour: str, token: str | None) -> Path:
    cities = "{" + ",".join(f'"{c}"' for c in CITIES) + "}"
    pages = CUSTOMERS // 50
    if flavour == "litecar":
        point = '"/users?id=eq." .. math.random(1, ROWS)'
        lst = '"/users?city=eq." .. cities[math.random(1, #cities)] .. "&order=age.desc&limit=100"'
        if kind == "plain":
            lst = f'"/customers?limit=50&offset=" .. (math.random(0, {pages - 1}) * 50)'
        elif kind == "embed":
            lst = f'"/customers?select=*,orders(*)&limit=50&offset=" .. (math.random(0, {pages - 1}) * 50)'
    else:
        point = '"/bench/users.json?id=" .. math.random(1, ROWS) .. "&_shape=array"'
        lst = '"/bench/users.json?city=" .. cities[math.random(1, #cities)] .. "&_sort_desc=age&_size=100&_shape=array"'
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    body = f"""
ROWS = {ROWS}
cities = {cities}
{auth}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter * 7919 + os.time())
end
function init(args)
  math.randomseed(seed)
end
request = function()
  return wrk.format("GET", {point if kind == "point" else lst})
end
"""
    f = path / f"{flavour}-{kind}.lua"
    f.write_text(body)
    return f


def parse_latency(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    assert m, s
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]


def run_wrk(url: str, threads: int, conns: int, duration: int, script: Path | None, server_pid: int,
            out_dir: Path) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    load = os.getloadavg()[0]
    out = out_dir / "wrk.out"
    with open(out, "w") as fh:
        cpu0 = cpu_seconds(server_pid)
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        cpu1 = cpu_seconds(server_pid)
    text = out.read_text()
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed: {text}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:(.*)", text)
    return {
        "cmd": " ".join(cmd),
        "threads": threads,
        "conns": conns,
        "rps": rps,
        "p50_ms": parse_latency(lat["50"]),
        "p99_ms": parse_latency(lat["99"]),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
        "server_cpu_s": (cpu1 - cpu0),
        "wrk_cpu_s": ru.ru_utime + ru.ru_stime,
        "wall_s": wall,
        "load1": load,
    }


ROWS = 1_000_000


def main() -> None:
    global ROWS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per (target, request)")
    ap.add_argument("--configs", default="1x16,1x32,2x16,2x32", help="wrk THREADSxCONNECTIONS list")
    ap.add_argument("--only", default="litecar,embed,datasette,floor")
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--json", help="write raw figures here")
    ap.add_argument("--keep", action="store_true", help="keep the /tmp/litecar-bench-rest-* directory")
    args = ap.parse_args()
    ROWS = args.rows
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    only = set(args.only.split(","))
    if not LITECAR.exists():
        sys.exit(f"{LITECAR} missing: cargo build --release --bins")
    if not shutil.which("wrk"):
        sys.exit("wrk missing: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="litecar-bench-rest-", dir="/tmp"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: list[dict] = []
    try:
        db = work / "bench.db"
        make_db(db, ROWS)
        secret = work / "jwt.secret"
        secret.write_bytes(os.urandom(32).hex().encode())
        token = make_token(secret.read_bytes())
        port, mport, dport = free_port(), free_port(), free_port()
        cfg = work / "litecar.yml"
        cfg.write_text(f"""addr: 127.0.0.1:{mport}
dbs:
  - path: {db}
    replicas:
      - url: file://{work}/unused-replica
rest:
  addr: 127.0.0.1:{port}
  allowed-tables: [users, customers, orders]
  auth:
    jwt-secret-file: {secret}
    roles: {{reader: {{read-only: true}}}}
""")
        plan: list[tuple[str, str, str, Path | None, subprocess.Popen]] = []
        if only & {"litecar", "floor", "embed"}:
            lc = subprocess.Popen([str(LITECAR), "serve", "-config", str(cfg)], stdout=open(work / "litecar.log", "w"),
                                  stderr=subprocess.STDOUT)
            procs.append(lc)
            wait_http(f"http://127.0.0.1:{mport}/healthz")
            auth = {"Authorization": f"Bearer {token}"}
            one = json.loads(wait_http(f"http://127.0.0.1:{port}/users?id=eq.12345", auth))
            assert len(one) == 1 and one[0]["id"] == 12345, one
            page = json.loads(wait_http(f"http://127.0.0.1:{port}/users?city=eq.city07&order=age.desc&limit=100", auth))
            assert len(page) == 100 and all(r["city"] == "city07" for r in page), page[:2]
            assert [r["age"] for r in page] == sorted((r["age"] for r in page), reverse=True)
            try:  # no token: must be refused
                urllib.request.urlopen(f"http://127.0.0.1:{port}/users?id=eq.1", timeout=5)
                raise AssertionError("request without a token was served")
            except urllib.error.HTTPError as e:
                assert e.code == 401, e.code
            page = json.loads(wait_http(f"http://127.0.0.1:{port}/customers?select=*,orders(*)&limit=50&offset=100",
                                        auth))
            assert len(page) == 50 and page[0]["id"] == 101, page[:1]
            assert all(len(c["orders"]) == ORDERS_PER_CUSTOMER and all(o["customer_id"] == c["id"] for o in c["orders"])
                       for c in page), page[:1]
            if "litecar" in only:
                plan.append(("litecar", "point", f"http://127.0.0.1:{port}",
                             lua_script(work, "point", "litecar", token), lc))
                plan.append(("litecar", "list", f"http://127.0.0.1:{port}",
                             lua_script(work, "list", "litecar", token), lc))
            if "embed" in only:
                for kind in ("plain", "embed"):
                    plan.append(("litecar", kind, f"http://127.0.0.1:{port}",
                                 lua_script(work, kind, "litecar", token), lc))
            if "floor" in only:
                plan.append(("litecar /healthz", "static", f"http://127.0.0.1:{mport}/healthz", None, lc))
        if "datasette" in only:
            env = dict(os.environ, DATASETTE_LOAD_PLUGINS="")
            ds = subprocess.Popen(["datasette", "serve", str(db), "--port", str(dport), "-h", "127.0.0.1",
                                   "--setting", "default_page_size", "100"], env=env,
                                  stdout=open(work / "datasette.log", "w"), stderr=subprocess.STDOUT)
            procs.append(ds)
            one = json.loads(wait_http(f"http://127.0.0.1:{dport}/bench/users.json?id=12345&_shape=array"))
            assert len(one) == 1 and one[0]["id"] == 12345, one
            page = json.loads(wait_http(
                f"http://127.0.0.1:{dport}/bench/users.json?city=city07&_sort_desc=age&_size=100&_shape=array"))
            assert len(page) == 100 and all(r["city"] == "city07" for r in page), page[:2]
            plan.append(("datasette", "point", f"http://127.0.0.1:{dport}", lua_script(work, "point", "ds", None), ds))
            plan.append(("datasette", "list", f"http://127.0.0.1:{dport}", lua_script(work, "list", "ds", None), ds))

        print(f"{'target':<17} {'request':<7} {'wrk':<7} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'non2xx':>6} {'srv cpu':>7} {'us/req':>6} {'wrk cpu':>7} {'load1':>5}", flush=True)
        for target, kind, url, script, proc in plan:
            if args.warmup:
                run_wrk(url, 1, 16, args.warmup, script, proc.pid, work)
            for t, c in configs:
                r = run_wrk(url, t, c, args.duration, script, proc.pid, work)
                # Server CPU per request: the cost of the stack, less sensitive than req/s to what else runs.
                r.update(target=target, request=kind,
                         server_us_per_req=1e6 * r["server_cpu_s"] / max(r["rps"] * r["wall_s"], 1))
                results.append(r)
                print(f"{target:<17} {kind:<7} {f'-t{t} -c{c}':<7} {r['rps']:>9.0f} {r['p50_ms']:>7.2f} "
                      f"{r['p99_ms']:>7.2f} {r['non2xx']:>6} {r['server_cpu_s'] / r['wall_s']:>6.2f}c "
                      f"{r['server_us_per_req']:>6.1f} "
                      f"{r['wrk_cpu_s'] / r['wall_s']:>6.2f}c {r['load1']:>5.2f}"
                      + (f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else ""), flush=True)
        print("\nbest per (target, request) by req/s:")
        for key in dict.fromkeys((r["target"], r["request"]) for r in results):
            best = max((r for r in results if (r["target"], r["request"]) == key), key=lambda r: r["rps"])
            print(f"  {key[0]:<17} {key[1]:<7} -t{best['threads']} -c{best['conns']}: {best['rps']:.0f} req/s, "
                  f"p50 {best['p50_ms']:.2f} ms, p99 {best['p99_ms']:.2f} ms")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        cleanup_procs()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
