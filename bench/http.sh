#!/usr/bin/env bash
# HTTP boot-asset throughput of provisioner against nginx (sendfile on), same file, same run, on
# loopback, with ../shared/bench/http-bench.sh (this repository's copy is looked for at
# $PP_BENCH, default ../shared/bench).
#
#   bench/http.sh                         # 256 MiB at 1, 16, 64 clients, 3 trials each
#   REPEATS=1 bench/http.sh               # quick look
#
# The large test downloads the same 256 MiB file from nginx (/bench-256M.bin) and from our
# content-addressed URL (/assets/<sha256>/bench.bin); the small test is nginx's static 1 KiB
# iPXE script against our dynamic per-machine script (/boot/ipxe?mac=…, a store read per
# request). Our server's peak RSS during the 64-client trial is read from /proc and printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PP_BENCH=${PP_BENCH:-$(cd ../shared/bench && pwd)}
REPEATS=${REPEATS:-3}
CONCS=${CONCS:-"1 16 64"}
NGX_PORT=${NGX_PORT:-18080}
OURS_PORT=${OURS_PORT:-18081}

[ "$(id -u)" -eq 0 ] || { echo "bench/http.sh: run as root (nginx)" >&2; exit 1; }
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  echo "bench/http.sh: needs nginx and wrk: apt-get install nginx wrk" >&2; exit 1; }
cargo build --release -q -p provisioner
BIN=$PWD/target/release/provisioner

W=$(mktemp -d /tmp/http-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT INT TERM
ROOT=$W/root; mkdir -p "$ROOT"
head -c $((256 * 1048576)) /dev/urandom > "$ROOT/bench-256M.bin"
cp "$ROOT/bench-256M.bin" "$W/bench.bin"

# Prepare our data dir: the asset imported through the CLI, one machine waiting for approval.
"$BIN" serve --listen "127.0.0.1:$OURS_PORT" --no-tftp --data-dir "$W/data" 2>"$W/prep.log" &
prep=$!
for _ in $(seq 100); do grep -q "listening on http" "$W/prep.log" && break; sleep 0.1; done
export PROVISIONER_URL=http://127.0.0.1:$OURS_PORT PROVISIONER_DATA_DIR=$W/data
digest=$("$BIN" assets import --loader "$W/bench.bin" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"].split(":")[1])')
"$BIN" machines add 52:54:00:00:be:01 >/dev/null
kill "$prep"; wait "$prep" || true

run() { "$PP_BENCH/http-bench.sh" --root "$ROOT" --large-mib 256 --large-conc "$CONCS" --repeats "$REPEATS" \
        --small-conc "16 64" --out "$W/out-$1" "${@:2}" | tail -1; }

echo "nginx:" >&2
NGX=$(PP_RUNDIR=$W/ngx run nginx --name nginx --port "$NGX_PORT" --server-cmd "$PP_BENCH/servers/nginx.sh")

echo "provisioner:" >&2
"$BIN" serve --listen "127.0.0.1:$OURS_PORT" --no-tftp --data-dir "$W/data" --log-format json 2>"$W/ours.log" &
ours=$!; PIDS+=("$ours")
for _ in $(seq 100); do grep -q "listening on http" "$W/ours.log" && break; sleep 0.1; done
peak=0
( while kill -0 "$ours" 2>/dev/null; do awk '/VmHWM/ {print $2}' "/proc/$ours/status"; sleep 0.5; done ) > "$W/hwm" &
OURS=$(run ours --name provisioner --port "$OURS_PORT" --large-path "/assets/$digest/bench.bin" \
       --small-path "/boot/ipxe?mac=52:54:00:00:be:01")
peak=$(sort -n "$W/hwm" | tail -1)
echo "$NGX"
echo "$OURS"
echo "provisioner peak RSS (VmHWM): $((peak / 1024)) MiB"
for f in "$W"/out-*/summary.txt; do [ -f "$f" ] && { echo "== $f"; cat "$f"; }; done
