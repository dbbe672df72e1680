#!/usr/bin/env bash
# Loopback HTTP bench of the server and client layers against their peers.
#
#   crates/threadline-tower/bench/http.sh
#
# One axum hello-world process per variant on 127.0.0.1, each a single Tokio worker
# pinned to CPU $SERVER_CPU; wrk (1 thread, $CONNS connections, 5 context headers per
# request from ctx.lua) pinned to CPU $LOAD_CPU. Variants are interleaved: every round
# runs each variant once; the tables take the median throughput and the minimum CPU.
#
# Two measures, both against `bare` from the same run:
# - throughput (wrk's requests/s). With the server core saturated and nothing else
#   on it, CPU per request = 1e6 / (requests per second) us;
# - CPU per request measured directly: the server process's user+system CPU time
#   (/proc/<pid>/stat) over the requests wrk completed. This one holds up when other
#   work shares the machine, which skews throughput; the "x bare (cpu)" column is
#   bare's CPU per request over the variant's, i.e. the throughput ratio a saturated
#   core would give. Interference from other processes only ever adds CPU, so the
#   table takes the minimum over the rounds for CPU (the median is shown beside it)
#   and the median for throughput.
#
# The outbound-hop table: every hop variant runs the server layer and calls a
# keep-alive backend living on the same pinned core (so a hop's CPU is everything
# one request costs there) with the hyper-util client: `hop-plain` sends no context,
# `hop-static` sets the same five headers by hand from constants (the wire and
# parsing cost of the headers alone), `hop-propagate` uses the client layer.
#
# Knobs (environment): ROUNDS (6), DURATION seconds (3), CONNS (32), SERVER_CPU (0),
# LOAD_CPU (1), VARIANTS, HOP (1 = also run the hop variants), CARGO (cargo).
set -euo pipefail

ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-3}
CONNS=${CONNS:-32}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
VARIANTS=${VARIANTS:-"bare threadline tower-http otel from-fn threadline-span tower-http-trace"}
HOP=${HOP:-1}
CARGO=${CARGO:-cargo}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found: installing the Debian package" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq wrk
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq wrk
  fi
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

echo "building the bench server (release)..." >&2
(cd "$root" && $CARGO build --quiet --release -p threadline-tower --features axum --example bench_server)
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin="$target_dir/release/examples/bench_server"

all="$VARIANTS"
if [ "$HOP" = 1 ]; then all="$all hop-plain hop-static hop-propagate"; fi

declare -A port pid
base=$((20000 + RANDOM % 20000))
i=0
cleanup() {
  for v in "${!pid[@]}"; do kill "${pid[$v]}" 2>/dev/null || true; done
}
trap cleanup EXIT

for v in $all; do
  port[$v]=$((base + i)); i=$((i + 1))
  taskset -c "$SERVER_CPU" "$bin" "$v" "${port[$v]}" 2>/dev/null &
  pid[$v]=$!
done
for v in $all; do
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${port[$v]}") 2>/dev/null; then break; fi
    sleep 0.1
  done
  # Warm-up (connections, allocator, caches).
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s -s "$here/ctx.lua" "http://127.0.0.1:${port[$v]}/" >/dev/null
done

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

results=$(mktemp)
for r in $(seq 1 "$ROUNDS"); do
  for v in $all; do
    t0=$(cpu_ticks "${pid[$v]}")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$here/ctx.lua" "http://127.0.0.1:${port[$v]}/")
    t1=$(cpu_ticks "${pid[$v]}")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v t="$tck" 'BEGIN {printf "%.3f", (b - a) * 1e6 / t / n}')
    bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    if [ -n "$bad" ]; then echo "warning: $v answered $bad non-2xx responses" >&2; fi
    echo "$v $r $rps $cpu" >>"$results"
    echo "round $r  $v  $rps req/s  $cpu us CPU/req" >&2
  done
done

minimum() { # variant [column]
  awk -v v="$1" -v c="${2:-4}" '$1 == v {print $c}' "$results" | sort -g | head -1
}
median() { # variant [column: 3 = req/s, 4 = CPU us/req]
  awk -v v="$1" -v c="${2:-3}" '$1 == v {print $c}' "$results" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

echo
echo "## Server layer: axum hello-world, 1 worker on CPU $SERVER_CPU, wrk -t1 -c$CONNS on CPU $LOAD_CPU, 5 context headers"
echo "## $ROUNDS rounds x ${DURATION}s, variants interleaved; req/s: median, CPU us/req: minimum over rounds"
echo
printf '| %-16s | %9s | %12s | %12s | %12s | %12s | %12s |\n' variant "req/s" "x bare (req)" "CPU us/req" "extra us" "x bare (cpu)" "CPU median"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ------------------ ----------- -------------- -------------- -------------- -------------- --------------
bare=$(median bare)
bare_cpu=$(minimum bare)
for v in $VARIANTS; do
  awk -v v="$v" -v m="$(median "$v")" -v b="$bare" -v c="$(minimum "$v")" -v bc="$bare_cpu" -v cm="$(median "$v" 4)" 'BEGIN {
    printf "| %-16s | %9.0f | %12.2f | %12.2f | %+12.2f | %12.2f | %12.2f |\n", v, m, m / b, c, c - bc, bc / c, cm }'
done

if [ "$HOP" = 1 ]; then
  echo
  echo "## Outbound hop: server layer + one keep-alive hyper-util call to a backend on the same core"
  echo
  printf '| %-16s | %9s | %12s | %12s |\n' variant "req/s" "CPU us/req" "CPU median"
  printf '|%s|%s|%s|%s|\n' ------------------ ----------- -------------- --------------
  for v in hop-plain hop-static hop-propagate; do
    awk -v v="$v" -v m="$(median "$v")" -v c="$(minimum "$v")" -v cm="$(median "$v" 4)" 'BEGIN {
      printf "| %-16s | %9.0f | %12.2f | %12.2f |\n", v, m, c, cm }'
  done
  # Both the minimum (the least disturbed round) and the median CPU: on a noisy machine
  # they disagree, and the difference is the measurement's uncertainty.
  for stat in minimum median; do
    plain=$($stat hop-plain 4)
    fixed=$($stat hop-static 4)
    prop=$($stat hop-propagate 4)
    srv=$($stat threadline 4)
    awk -v p="$plain" -v st="$fixed" -v q="$prop" -v s="$srv" -v w="$stat" 'BEGIN {
      hop = p - s;
      printf "\n%s CPU: the keep-alive hop itself (hop-plain - threadline): %.2f us per request\n", w, hop;
      printf "%s CPU: client layer alone (hop-propagate - hop-static): %+.2f us = %.1f%% of the hop\n", w, q - st, 100 * (q - st) / hop;
      printf "%s CPU: layer + five headers on the wire (hop-propagate - hop-plain): %+.2f us = %.1f%% of the hop\n", w, q - p, 100 * (q - p) / hop }'
  done
fi
rm -f "$results"
