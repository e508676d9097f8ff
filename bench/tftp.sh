#!/usr/bin/env bash
# TFTP throughput of provisioner against tftpd-hpa, same clients, same run, on loopback.
#
#   bench/tftp.sh                      # full grid, 3 trials each (about 10 minutes)
#   REPEATS=1 SIZES=1 bench/tftp.sh    # quick look
#
# Grid: SIZES (MiB) x PROFILES (client:blksize[:wWINDOW]) x CONCS (clients at once). Each trial
# starts CONC clients together, each downloads the file once into tmpfs; every size is checked
# and one copy per trial is compared byte for byte. MB/s = bytes delivered / batch wall time
# (MB = 1e6 B); the median of REPEATS trials is reported. tftpd-hpa has no windowsize support, so
# windowed profiles are compared with its best figure for the same size and concurrency.
# Needs root (tftpd-hpa serves as root here) and the packages of scripts/install-test-deps.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-3}
SIZES=${SIZES:-"1 32"}
CONCS=${CONCS:-"1 50"}
PROFILES=${PROFILES:-"tftp-hpa:512 atftp:512 atftp:1468 curl:1468 atftp:1468:w16"}
OURS_PORT=${OURS_PORT:-16969}
HPA_PORT=${HPA_PORT:-16970}

[ "$(id -u)" -eq 0 ] || { echo "bench/tftp.sh: run as root" >&2; exit 1; }
scripts/install-test-deps
cargo build --release -q -p provisioner
BIN=$PWD/target/release/provisioner

W=$(mktemp -d /dev/shm/tftp-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT INT TERM
mkdir -p "$W/root" "$W/dl"
for s in $SIZES; do head -c $((s * 1048576)) /dev/urandom > "$W/root/bench-${s}M.bin"; done
printf '[tftp]\nroot = "%s"\nmax_per_client = 1000\n' "$W/root" > "$W/p.toml"

"$BIN" serve --config "$W/p.toml" --listen 127.0.0.1:0 --tftp-listen "127.0.0.1:$OURS_PORT" \
  --data-dir "$W/data" 2>"$W/ours.log" &
PIDS+=($!)
in.tftpd -L -a "127.0.0.1:$HPA_PORT" -u root -s "$W/root" 2>"$W/hpa.log" &
PIDS+=($!)
for port in $OURS_PORT $HPA_PORT; do
  for _ in $(seq 100); do ss -uln | grep -q ":$port " && break; sleep 0.1; done
  ss -uln | grep -q ":$port " || { echo "nothing listens on udp/$port" >&2; cat "$W"/*.log >&2; exit 1; }
done

# client PORT FILE OUT PROFILE
client() {
  local port=$1 file=$2 out=$3 name blk win
  IFS=: read -r name blk win <<<"$4"
  case $name in
    tftp-hpa) timeout 300 tftp -m binary 127.0.0.1 "$port" -c get "$file" "$out" ;;
    curl) timeout 300 curl -sS --tftp-blksize "$blk" -o "$out" "tftp://127.0.0.1:$port/$file" ;;
    atftp)
      local opts=(--option "blksize $blk")
      [ -n "$win" ] && opts+=(--option "windowsize ${win#w}")
      timeout 300 atftp "${opts[@]}" -g -r "$file" -l "$out" 127.0.0.1 "$port" >/dev/null 2>&1 ;;
  esac
}

# trial PORT SIZE CONC PROFILE -> MB/s on stdout
trial() {
  local port=$1 size=$2 conc=$3 profile=$4 file="bench-${2}M.bin" t0 t1 fails=0 pids=()
  rm -f "$W"/dl/*
  t0=$(date +%s.%N)
  for i in $(seq "$conc"); do client "$port" "$file" "$W/dl/$i" "$profile" & pids+=($!); done
  # A failed client's exit code is what tells why (curl 7.88 prints "getpeername() failed" for
  # every TFTP error; 68 = ERROR 1, 69 = ERROR 2, 71 = another ERROR, 124 = timed out).
  local codes=()
  for p in "${pids[@]}"; do
    wait "$p" && continue
    local rc=$?
    fails=$((fails + 1))
    codes+=("$rc")
  done
  t1=$(date +%s.%N)
  local want=$((size * 1048576)) ok=0
  for i in $(seq "$conc"); do [ "$(stat -c %s "$W/dl/$i" 2>/dev/null || echo 0)" = "$want" ] && ok=$((ok + 1)); done
  cmp -s "$W/dl/1" "$W/root/$file" || { echo "port $port $profile: download differs from the source" >&2; exit 1; }
  [ "$fails" -eq 0 ] && [ "$ok" -eq "$conc" ] || echo "port $port $profile ${size}M x$conc: $fails failed (exit codes: ${codes[*]:-none}), $ok complete" >&2
  echo "$t0 $t1 $ok $want" | awk '{printf "%.1f", $3 * $4 / ($2 - $1) / 1e6}'
}

median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-18s %5s %4s %10s %10s %7s\n' profile MiB conc ours_MB/s hpa_MB/s ratio
declare -A best_hpa
RESULTS=()
for size in $SIZES; do
  for conc in $CONCS; do
    for profile in $PROFILES; do
      o=(); h=()
      for _ in $(seq "$REPEATS"); do
        o+=("$(trial "$OURS_PORT" "$size" "$conc" "$profile")")
        h+=("$(trial "$HPA_PORT" "$size" "$conc" "$profile")")
      done
      om=$(echo "${o[@]}" | median); hm=$(echo "${h[@]}" | median)
      key="$size/$conc"
      if [[ $profile != *:w* ]]; then
        best_hpa[$key]=$(echo "${best_hpa[$key]:-0} $hm" | awk '{print ($2 > $1 ? $2 : $1)}')
      fi
      ratio=$(echo "$om $hm" | awk '{printf "%.2f", $1 / $2}')
      printf '%-18s %5s %4s %10s %10s %7s\n' "$profile" "$size" "$conc" "$om" "$hm" "$ratio"
      RESULTS+=("$profile $size $conc $om $hm")
    done
  done
done

echo
echo "Targets (issue: TFTP): >= 1.0x tftpd-hpa at blksize 1468; windowsize 16 >= 3x tftpd-hpa's best."
for r in "${RESULTS[@]}"; do
  read -r profile size conc om hm <<<"$r"
  case $profile in
    *:1468:w*) echo "$profile ${size}M x$conc: ours $om MB/s vs tftpd-hpa best ${best_hpa[$size/$conc]} MB/s = $(echo "$om ${best_hpa[$size/$conc]}" | awk '{printf "%.2f", $1/$2}')x" ;;
    *:1468) echo "$profile ${size}M x$conc: $(echo "$om $hm" | awk '{printf "%.2f", $1/$2}')x tftpd-hpa" ;;
  esac
done
