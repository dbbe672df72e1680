#!/usr/bin/env bash
# Loopback HTTP bench of the server and client layers against their peers.
#
#   crates/threadline-tower/bench/http.sh
#
# One axum hello-world process per variant on 127.0.0.1, each a single Tokio worker
# pinned to CPU $SERVER_CPU; wrk (1 thread, $CONNS connections, 5 context headers per
# request from ctx.lua) pinned to CPU $LOAD_CPU. Variants are interleaved: every round
# runs each variant once, starting one further along the list each round.
#
# Two measures, both against `bare` from the same run:
# - throughput (wrk's requests/s). With the server core saturated and nothing else
#   on it, CPU per request = 1e6 / (requests per second) us;
# - CPU per request measured directly: the server process's user+system CPU time
#   (/proc/<pid>/stat) over the requests wrk completed. The "x bare (CPU)" column is
#   bare's CPU per request over the variant's, i.e. the throughput ratio a saturated
#   core would give.
# Both are paired: a variant's round is compared with bare's round of the same pass
# (seconds apart), and the table gives the median of those per-round ratios with
# their interquartile range. The machine's speed drifts between passes (other tenants,
# the loopback's softirq work landing on either core); pairing cancels the drift that
# both sides of a pair share, where the median of each variant taken on its own does not.
# A second table gives each paired median a 95% confidence interval (order statistics,
# no assumption about the distribution): whether a goal such as ">= 0.90x bare" holds
# beyond the noise of the run, or only at the median. More ROUNDS narrow it.
#
# With INSTRUCTIONS=1, each variant then also runs once under callgrind (valgrind)
# for a fixed time at low load: user-space instructions per request, a count that no
# other tenant of the machine can disturb (the kernel's share of a request is not in it).
#
# The outbound-hop table: every hop variant runs the server layer and calls a
# keep-alive backend living on the same pinned core (so a hop's CPU is everything
# one request costs there) with the hyper-util client: `hop-plain` sends no context,
# `hop-static` sets the same five headers by hand from constants (the wire and
# parsing cost of the headers alone), `hop-propagate` uses the client layer.
#
# Knobs (environment): ROUNDS (6), DURATION seconds (3), CONNS (32), SERVER_CPU (0),
# LOAD_CPU (1), VARIANTS, HOP (1 = also run the hop variants), INSTRUCTIONS (0),
# WARMUP seconds per process (1), CARGO (cargo).
set -euo pipefail

ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-3}
CONNS=${CONNS:-32}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
VARIANTS=${VARIANTS:-"bare threadline tower-http otel from-fn threadline-span tower-http-trace"}
HOP=${HOP:-1}
INSTRUCTIONS=${INSTRUCTIONS:-0}
WARMUP=${WARMUP:-1}
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

declare -A pid
base=$((10000 + RANDOM % 15000))
next_port=$base
cleanup() {
  for v in "${!pid[@]}"; do kill "${pid[$v]}" 2>/dev/null || true; done
}
trap cleanup EXIT

# Starts a fresh server process for variant $1 on a new port (left in $p) and warms
# it up. Ports come from below the kernel's ephemeral range, so that no client socket
# of an earlier round (lingering in TIME_WAIT) holds one; a port that is taken anyway
# makes the server exit, and the next one is tried.
start() {
  local v=$1 attempt
  for attempt in 1 2 3 4 5; do
    p=$next_port
    next_port=$((next_port + 1))
    taskset -c "$SERVER_CPU" "$bin" "$v" "$p" >/dev/null 2>&1 &
    pid[$v]=$!
    for _ in $(seq 1 200); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        # Warm-up (connections, allocator, caches).
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP"s -s "$here/ctx.lua" "http://127.0.0.1:$p/" >/dev/null
        return 0
      fi
      kill -0 "${pid[$v]}" 2>/dev/null || break
      sleep 0.05
    done
    echo "warning: $v did not come up on port $p (attempt $attempt)" >&2
    stop "$v"
  done
  echo "error: could not start $v" >&2
  exit 1
}
stop() {
  kill "${pid[$1]}" 2>/dev/null || true
  wait "${pid[$1]}" 2>/dev/null || true
  unset "pid[$1]"
}

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }

results=$(mktemp)
read -r -a order <<<"$all"
for r in $(seq 1 "$ROUNDS"); do
  # Each round starts one variant further along the list, so that no variant always
  # runs first (or right after the same neighbour) in its round.
  k=$(( (r - 1) % ${#order[@]} ))
  for v in "${order[@]:k}" "${order[@]:0:k}"; do
    # A new process every round: where one process's code and heap happen to land
    # (cache-set and branch-predictor aliasing) shifts its cost by several per cent
    # for as long as it runs; new processes spread that over the rounds.
    start "$v"
    t0=$(cpu_ticks "${pid[$v]}")
    u0=$(user_ticks "${pid[$v]}")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$here/ctx.lua" "http://127.0.0.1:$p/")
    t1=$(cpu_ticks "${pid[$v]}")
    u1=$(user_ticks "${pid[$v]}")
    stop "$v"
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v t="$tck" 'BEGIN {printf "%.3f", (b - a) * 1e6 / t / n}')
    usr=$(awk -v a="$u0" -v b="$u1" -v n="$n" -v t="$tck" 'BEGIN {printf "%.3f", (b - a) * 1e6 / t / n}')
    bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    if [ -n "$bad" ]; then echo "warning: $v answered $bad non-2xx responses" >&2; fi
    echo "$v $r $rps $cpu $usr" >>"$results"
    echo "round $r  $v  $rps req/s  $cpu us CPU/req" >&2
  done
done

minimum() { # variant [column]
  awk -v v="$1" -v c="${2:-4}" '$1 == v {print $c}' "$results" | sort -g | head -1
}
median() { # variant [column: 3 = req/s, 4 = CPU us/req, 5 = user CPU us/req]
  awk -v v="$1" -v c="${2:-3}" '$1 == v {print $c}' "$results" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}
# Paired statistics: within each round, a variant against `base` in the same round.
# Prints "median q1 q3 lo hi" over the rounds of: ratio of req/s (kind rps), ratio of
# CPU per request base/variant (kind cpu), the extra CPU us per request (kind extra), or
# the extra user-space CPU us per request (kind user). [lo, hi] is a 95% confidence
# interval for the median, from order statistics (distribution-free: the k-th smallest
# and k-th largest round, k the largest with P(Binomial(n, 1/2) < k) <= 2.5%); with
# fewer than 6 rounds there is none and it is printed as nan.
paired() { # kind variant base
  awk -v kind="$1" -v v="$2" -v b="$3" '
    $1 == v {rv[$2] = $3; cv[$2] = $4; uv[$2] = $5}
    $1 == b {rb[$2] = $3; cb[$2] = $4; ub[$2] = $5}
    END {
      n = 0
      for (r in rv) if (r in rb) {
        if (kind == "rps") x = rv[r] / rb[r]
        else if (kind == "cpu") x = cb[r] / cv[r]
        else if (kind == "user") x = uv[r] - ub[r]
        else x = cv[r] - cb[r]
        a[++n] = x
      }
      for (i = 2; i <= n; i++) { x = a[i]; j = i - 1; while (j > 0 && a[j] > x) { a[j + 1] = a[j]; j-- } a[j + 1] = x }
      k = 0; c = 1; cdf = 0
      for (i = 0; i < n; i++) { cdf += c / 2 ^ n; if (cdf > 0.025) break; k = i + 1; c = c * (n - i) / (i + 1) }
      if (k >= 1) { lo = sprintf("%.4f", a[k]); hi = sprintf("%.4f", a[n - k + 1]) } else { lo = "nan"; hi = "nan" }
      printf "%.4f %.4f %.4f %s %s\n", quant(a, n, 0.5), quant(a, n, 0.25), quant(a, n, 0.75), lo, hi
    }
    function quant(a, n, p,   h, lo) { h = (n - 1) * p + 1; lo = int(h); return (lo >= n) ? a[n] : a[lo] + (h - lo) * (a[lo + 1] - a[lo]) }
  ' "$results"
}

echo
echo "## Server layer: axum hello-world, 1 worker on CPU $SERVER_CPU, wrk -t1 -c$CONNS on CPU $LOAD_CPU, 5 context headers"
echo "## $ROUNDS rounds x ${DURATION}s, variants interleaved. Ratios and extra CPU are paired: each round's"
echo "## variant against the same round's bare, then the median over rounds [interquartile range]."
echo
printf '| %-16s | %9s | %-22s | %-22s | %-24s | %12s |\n' variant "req/s" "x bare (req/s)" "x bare (CPU)" "extra CPU us/req" "CPU us (min)"
printf '|%s|%s|%s|%s|%s|%s|\n' ------------------ ----------- ------------------------ ------------------------ -------------------------- --------------
cis=""
for v in $VARIANTS; do
  read -r rm rlo rhi rcl rch <<<"$(paired rps "$v" bare)"
  read -r cm clo chi _ _ <<<"$(paired cpu "$v" bare)"
  read -r em elo ehi ecl ech <<<"$(paired extra "$v" bare)"
  awk -v v="$v" -v m="$(median "$v")" -v c="$(minimum "$v")" \
    -v rm="$rm" -v rlo="$rlo" -v rhi="$rhi" -v cm="$cm" -v clo="$clo" -v chi="$chi" \
    -v em="$em" -v elo="$elo" -v ehi="$ehi" 'BEGIN {
    r = sprintf("%4.2f [%4.2f-%4.2f]", rm, rlo, rhi)
    x = sprintf("%4.2f [%4.2f-%4.2f]", cm, clo, chi)
    e = sprintf("%+5.2f [%+5.2f %+5.2f]", em, elo, ehi)
    printf "| %-16s | %9.0f | %-22s | %-22s | %-24s | %12.2f |\n", v, m, r, x, e, c }'
  cis+=$(printf '| %-16s | %-31s | %-33s |' "$v" \
    "$(printf '%.2f [%.2f, %.2f]' "$rm" "$rcl" "$rch")" \
    "$(printf '%+.2f [%+.2f, %+.2f]' "$em" "$ecl" "$ech")")$'\n'
done
echo
echo "## How sure the medians are: 95% confidence intervals over the $ROUNDS paired rounds (order statistics)"
echo
printf '| %-16s | %-31s | %-33s |\n' variant "x bare (req/s), median [95% CI]" "extra CPU us/req, median [95% CI]"
printf '|%s|%s|%s|\n' ------------------ --------------------------------- -----------------------------------
printf '%s' "$cis"

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
  # Paired per round, like the server table: the client layer's extra CPU is each
  # round's hop-propagate minus the same round's hop-static; the hop itself is each
  # round's hop-plain minus its threadline (the same server layer without a call).
  read -r hm hlo hhi _ _ <<<"$(paired extra hop-plain threadline)"
  read -r lm llo lhi lcl lch <<<"$(paired extra hop-propagate hop-static)"
  read -r wm wlo whi _ _ <<<"$(paired extra hop-propagate hop-plain)"
  awk -v hm="$hm" -v hlo="$hlo" -v hhi="$hhi" -v lm="$lm" -v llo="$llo" -v lhi="$lhi" \
    -v lcl="$lcl" -v lch="$lch" -v wm="$wm" -v wlo="$wlo" -v whi="$whi" 'BEGIN {
    printf "\nthe keep-alive hop itself (hop-plain - threadline): %.2f us per request [%.2f-%.2f]\n", hm, hlo, hhi;
    printf "client layer alone (hop-propagate - hop-static): %+.2f us [%+.2f %+.2f] = %.1f%% of the hop [%.1f%% %.1f%%]\n", lm, llo, lhi, 100 * lm / hm, 100 * llo / hm, 100 * lhi / hm;
    if (lcl != "nan") printf "  95%% CI of that median: [%+.2f %+.2f] us = [%.1f%% %.1f%%] of the hop\n", lcl, lch, 100 * lcl / hm, 100 * lch / hm;
    printf "layer + five headers on the wire (hop-propagate - hop-plain): %+.2f us [%+.2f %+.2f] = %.1f%% of the hop\n", wm, wlo, whi, 100 * wm / hm }'
fi

if [ "$INSTRUCTIONS" = 1 ]; then
  command -v valgrind >/dev/null || { echo "INSTRUCTIONS=1 needs valgrind" >&2; exit 1; }
  cleanup
  echo
  echo "## User-space instructions per request (callgrind, 8 connections, counted over 5 s after 2 s of warm-up)"
  echo
  printf '| %-16s | %12s | %12s |\n' variant "instr/req" "extra"
  printf '|%s|%s|%s|\n' ------------------ -------------- --------------
  cg=$(mktemp -d)
  for v in $all; do
    # As in the timed rounds, a port found taken (the server exits) moves on to the next.
    up=0
    for attempt in 1 2 3 4 5; do
      p=$next_port; next_port=$((next_port + 1))
      valgrind --tool=callgrind --callgrind-out-file="$cg/$v" "$bin" "$v" "$p" 2>/dev/null &
      vp=$!
      for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then up=1; break; fi
        kill -0 "$vp" 2>/dev/null || break
        sleep 0.1
      done
      if [ "$up" = 1 ]; then break; fi
      echo "warning: $v did not come up under callgrind on port $p (attempt $attempt)" >&2
      kill "$vp" 2>/dev/null || true
      wait "$vp" 2>/dev/null || true
      rm -f "$cg/$v".*
    done
    if [ "$up" != 1 ]; then echo "error: could not start $v under callgrind" >&2; exit 1; fi
    wrk -t1 -c8 -d2s -s "$here/ctx.lua" "http://127.0.0.1:$p/" >/dev/null
    callgrind_control -z "$vp" >/dev/null 2>&1
    out=$(wrk -t1 -c8 -d5s -s "$here/ctx.lua" "http://127.0.0.1:$p/")
    callgrind_control -d "$vp" >/dev/null 2>&1
    kill "$vp"; wait "$vp" 2>/dev/null || true
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    # The dump after zeroing holds just the measured stretch.
    total=$(callgrind_annotate "$(ls -t "$cg/$v".* | head -1)" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$v $((total / n))" >>"$cg/counts"
  done
  b_instr=$(awk '$1 == "bare" {print $2}' "$cg/counts")
  while read -r v c; do
    printf '| %-16s | %12d | %+12d |\n' "$v" "$c" "$((c - ${b_instr:-$c}))"
  done <"$cg/counts"
  if [ "$HOP" = 1 ]; then
    # The client layer's share of the hop's CPU from its instruction count: its extra
    # instructions (hop-propagate - hop-static) at the hop's own user-space time per
    # instruction, over the hop's CPU (user + kernel) from the timed rounds. An
    # estimate: it assumes the layer's instructions run as fast as the hop's average.
    read -r hu _ _ _ _ <<<"$(paired user hop-plain threadline)"
    read -r hc _ _ _ _ <<<"$(paired extra hop-plain threadline)"
    awk -v hu="$hu" -v hc="$hc" \
      -v pl="$(awk '$1 == "hop-plain" {print $2}' "$cg/counts")" \
      -v tl="$(awk '$1 == "threadline" {print $2}' "$cg/counts")" \
      -v st="$(awk '$1 == "hop-static" {print $2}' "$cg/counts")" \
      -v pr="$(awk '$1 == "hop-propagate" {print $2}' "$cg/counts")" 'BEGIN {
      hi = pl - tl; d = pr - st; t = d * hu / hi
      printf "\nclient layer by instructions: %+d per hop = %.1f%% of the hop'"'"'s user-space instructions (%d);\n", d, 100 * d / hi, hi
      printf "at the hop'"'"'s %.2f us of user time per request that is ~%.2f us = ~%.1f%% of the hop'"'"'s %.2f us of CPU (estimate)\n", hu, t, 100 * t / hc, hc }'
  fi
  rm -rf "$cg"
fi
rm -f "$results"
