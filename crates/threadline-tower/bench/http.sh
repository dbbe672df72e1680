#!/usr/bin/env bash
# Loopback HTTP bench of the server and client layers against their peers.
#
#   crates/threadline-tower/bench/http.sh
#
# One axum hello-world process per variant on 127.0.0.1, each a single Tokio worker
# pinned to CPU $SERVER_CPU; wrk (1 thread, $CONNS connections, 5 context headers per
# request from ctx.lua) pinned to CPU $LOAD_CPU. Variants are interleaved: every round
# runs each variant once, and the table reports medians over the rounds.
#
# Throughput is compared with `bare` from the same run. With the server core
# saturated, CPU per request = 1e6 / (requests per second) µs; the extra CPU of a
# variant is its CPU per request minus bare's.
#
# The outbound-hop table compares `hop-propagate` (client layer on the hyper-util
# client) with `hop-plain` (same client, no layer): both run the server layer and
# call a keep-alive backend living on the same pinned core, so a hop's CPU is
# everything one request costs there.
#
# Knobs (environment): ROUNDS (3), DURATION seconds (5), CONNS (32), SERVER_CPU (0),
# LOAD_CPU (1), VARIANTS, HOP (1 = also run the hop variants), CARGO (cargo).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
VARIANTS=${VARIANTS:-"bare threadline tower-http otel from-fn threadline-span"}
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
if [ "$HOP" = 1 ]; then all="$all hop-plain hop-propagate"; fi

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

results=$(mktemp)
for r in $(seq 1 "$ROUNDS"); do
  for v in $all; do
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$here/ctx.lua" "http://127.0.0.1:${port[$v]}/")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    if [ -n "$bad" ]; then echo "warning: $v answered $bad non-2xx responses" >&2; fi
    echo "$v $r $rps" >>"$results"
    echo "round $r  $v  $rps req/s" >&2
  done
done

median() { # variant
  awk -v v="$1" '$1 == v {print $3}' "$results" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

echo
echo "## Server layer: axum hello-world, 1 worker on CPU $SERVER_CPU, wrk -t1 -c$CONNS on CPU $LOAD_CPU, 5 context headers"
echo "## $ROUNDS rounds x ${DURATION}s, variants interleaved, medians"
echo
printf '| %-16s | %12s | %8s | %12s | %12s |\n' variant "req/s" "x bare" "CPU us/req" "extra us"
printf '|%s|%s|%s|%s|%s|\n' ------------------ -------------- ---------- -------------- --------------
bare=$(median bare)
for v in $VARIANTS; do
  m=$(median "$v")
  awk -v v="$v" -v m="$m" -v b="$bare" 'BEGIN {
    printf "| %-16s | %12.0f | %8.2f | %12.2f | %+12.2f |\n", v, m, m / b, 1e6 / m, 1e6 / m - 1e6 / b }'
done

if [ "$HOP" = 1 ]; then
  plain=$(median hop-plain)
  prop=$(median hop-propagate)
  srv=$(median threadline)
  echo
  echo "## Outbound hop: server layer + one keep-alive hyper-util call to a backend on the same core"
  echo
  awk -v p="$plain" -v q="$prop" -v s="$srv" 'BEGIN {
    hop = 1e6 / p - 1e6 / s; layer = 1e6 / q - 1e6 / p;
    printf "| %-24s | %12s | %12s |\n", "variant", "req/s", "CPU us/req";
    printf "|%s|%s|%s|\n", "--------------------------", "--------------", "--------------";
    printf "| %-24s | %12.0f | %12.2f |\n", "hop-plain", p, 1e6 / p;
    printf "| %-24s | %12.0f | %12.2f |\n", "hop-propagate", q, 1e6 / q;
    printf "\nthroughput hop-propagate / hop-plain: %.3f\n", q / p;
    printf "CPU of the hop itself (hop-plain - threadline): %.2f us\n", hop;
    printf "client layer CPU per call (hop-propagate - hop-plain): %+.2f us = %.1f%% of the hop\n", layer, 100 * layer / hop }'
fi
rm -f "$results"
