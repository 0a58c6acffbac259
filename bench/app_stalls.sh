#!/usr/bin/env bash
# How long an application writing hard beside `litecar replicate` spends waiting for SQLite locks.
#
# Writes 1 GB of 4 KiB blobs (50 rows per transaction, synchronous=NORMAL, busy_timeout 5 s) into a fresh database
# while litecar replicates it to a file replica, with the writer under strace so that every sleep of SQLite's busy
# handler (1, 2, 5, 10, 15, 20, 25 ms ...) is counted. Prints the writer's time, the number and total of its sleeps,
# and litecar's CPU and peak RSS.
#
# Usage: bench/app_stalls.sh [LITECAR_BIN]   (default: target/release/litecar; needs strace and python3)
set -euo pipefail
bin=$(realpath "${1:-$(dirname "$0")/../target/release/litecar}")
work=$(mktemp -d /tmp/litecar-bench-stalls-XXXXXX)
# SIGTERM goes to litecar itself: /usr/bin/time would die of it and leave litecar running.
trap 'pkill -TERM -P "$lc" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$work/app.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
c.close()
PY
/usr/bin/time -o "$work/time" -f "litecar: %U s user, %S s sys, peak RSS %M KB" \
    "$bin" replicate "$work/app.db" "file://$work/replica" >"$work/litecar.log" 2>&1 &
lc=$!
sleep 2
strace -f --seccomp-bpf -T -e trace=clock_nanosleep -o "$work/sleeps" python3 - "$work/app.db" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=NORMAL")
c.execute("PRAGMA busy_timeout=5000")
t0 = time.monotonic()
for _ in range(10**9 // (50 * 4096)):
    c.execute("BEGIN")
    c.executemany("INSERT INTO big(data) VALUES(randomblob(4096))", [()] * 50)
    c.execute("COMMIT")
print(f"writer: {time.monotonic() - t0:.1f} s for 1 GB")
PY
awk -F'<' '/clock_nanosleep/ {gsub(">", "", $NF); s += $NF; n++} END {printf "writer slept %d times, %.2f s in all\n", n, s}' "$work/sleeps"
sleep 1
pkill -TERM -P "$lc"
wait "$lc" || true
cat "$work/time"
