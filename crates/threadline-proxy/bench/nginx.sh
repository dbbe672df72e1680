#!/usr/bin/env bash
# threadline proxy vs nginx as a reverse proxy doing the same job, side by side.
#
#   crates/threadline-proxy/bench/nginx.sh
#
# Needs (installs nothing): nginx (Debian: `apt-get install nginx-light` or `nginx`),
# wrk (`apt-get install wrk`), taskset (util-linux), and a cargo toolchain. Runs as any
# user that may raise its open-files limit to 30,000 (`ulimit -n`), for the idle test.
#
# Both proxies get one worker (`threadline proxy --workers 1`, nginx
# `worker_processes 1` with `master_process off`) pinned to CPU $PROXY_CPU; wrk and the
# backend (one Tokio thread answering `hello`) share CPU $LOAD_CPU. Both proxies do the
# job of the issue: a rule on `x-routing-key` choosing the upstream (nginx: `map
# $http_x_routing_key $upstream`), the correlation id set when absent (nginx: from
# `$request_id`) and echoed, HTTP/1.1 keep-alive to the upstream. The threadline proxy
# also does what nginx is not asked to: it captures and validates the context
# (traceparent, tracestate, baggage), mints a traceparent and writes a child one per
# request. Access logs are off on both (`access_log off`, `--log off`).
#
# Each round runs wrk against nginx, the proxy and the backend directly (order rotated
# each round; fresh measurements, same processes), and the tables give medians and the
# per-round ratios proxy/nginx paired within a round (median and the min-max range).
# Besides wrk's figures, each proxy's own CPU time (user + system, /proc/<pid>/stat)
# over the requests wrk completed: CPU per request, which does not need the proxy's
# core to be saturated (wrk and the backend may be the bottleneck on CPU $LOAD_CPU).
# Then 10,000 keep-alive connections that each served one request are held idle
# against each proxy in turn, and its resident memory (VmRSS) is read.
#
# Knobs (environment): ROUNDS (5), DURATION seconds (5), CONNS (64), IDLE (10000),
# PROXY_CPU (0), LOAD_CPU (1), CARGO (cargo).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
IDLE=${IDLE:-10000}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CARGO=${CARGO:-cargo}

for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool is required (Debian: apt-get install nginx-light wrk util-linux)" >&2
    exit 1
  }
done
ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((IDLE + 1000)) ] || echo "warning: open-files limit $(ulimit -n): the idle test may fail" >&2

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
echo "building (release)..." >&2
(cd "$root" && $CARGO build --quiet --release -p threadline-cli --bin threadline &&
  $CARGO build --quiet --release -p threadline-proxy --example bench_backend --example bench_idle)
proxy_bin="$target_dir/release/threadline"
backend_bin="$target_dir/release/examples/bench_backend"
idle_bin="$target_dir/release/examples/bench_idle"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
up() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing on port $1" >&2; return 1; }

b1=$(free_port); b2=$(free_port); np=$(free_port); tp=$(free_port)
taskset -c "$LOAD_CPU" "$backend_bin" "127.0.0.1:$b1" "127.0.0.1:$b2" & pids+=($!)
up "$b1"; up "$b2"

mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 30000;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 20000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  upstream baseline { server 127.0.0.1:$b1; keepalive 64; keepalive_requests 1000000; }
  upstream alice { server 127.0.0.1:$b2; keepalive 64; keepalive_requests 1000000; }
  map \$http_x_routing_key \$upstream { default baseline; alice alice; }
  map \$http_x_correlation_id \$cid { "" \$request_id; default \$http_x_correlation_id; }
  server {
    listen 127.0.0.1:$np backlog=16384;
    location / {
      proxy_pass http://\$upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Correlation-Id \$cid;
      add_header X-Correlation-Id \$cid always;
    }
  }
}
CONF
taskset -c "$PROXY_CPU" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & pids+=($!); nginx_pid=$!

cat > "$work/proxy.toml" <<CONF
access_log = false
[timeouts]
header_ms = 300000
[[routes]]
name = "alice"
upstream = "http://127.0.0.1:$b2"
header = "x-routing-key"
equals = "alice"
CONF
taskset -c "$PROXY_CPU" "$proxy_bin" proxy --workers 1 --log off --listen "127.0.0.1:$tp" \
  --upstream "http://127.0.0.1:$b1" --config "$work/proxy.toml" 2>"$work/proxy.err" & pids+=($!); proxy_pid=$!
up "$np"; up "$tp"

cat > "$work/req.lua" <<'LUA'
wrk.headers["x-routing-key"] = "alice"
wrk.headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
LUA

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# Prints "rps p50_us p99_us cpu_us_per_request" for one wrk run against port $1; the
# CPU is that of process $2 (the proxy under test; 0 for none).
measure() {
  local out c0=0 c1=0
  [ "$2" != 0 ] && c0=$(cpu_ticks "$2")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$work/req.lua" "http://127.0.0.1:$1/" 2>&1)
  [ "$2" != 0 ] && c1=$(cpu_ticks "$2")
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$out" | grep "Non-2xx\|Socket errors" >&2; fi
  echo "$out" | awk -v ticks=$((c1 - c0)) -v hz="$HZ" '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return (v+0)*1000; if (v ~ /s$/) return (v+0)*1e6; return v+0 }
    /Requests\/sec/ { rps=$2 }
    / requests in / { n=$1 }
    $1=="50%" { p50=us($2) }
    $1=="99%" { p99=us($2) }
    END { printf "%.0f %.0f %.0f %.2f\n", rps, p50, p99, (n > 0 ? ticks * 1e6 / hz / n : 0) }'
}

# warm-up
measure "$np" 0 >/dev/null; measure "$tp" 0 >/dev/null

declare -a N_RPS T_RPS D_RPS N_P50 T_P50 D_P50 N_P99 T_P99 D_P99 R_RPS R_P99 N_CPU T_CPU R_CPU
for r in $(seq 1 "$ROUNDS"); do
  case $((r % 3)) in
    0) order="nginx proxy direct";; 1) order="proxy direct nginx";; *) order="direct nginx proxy";;
  esac
  for v in $order; do
    case $v in
      nginx) read -r rps p50 p99 cpu < <(measure "$np" "$nginx_pid"); N_RPS+=("$rps"); N_P50+=("$p50"); N_P99+=("$p99"); N_CPU+=("$cpu");;
      proxy) read -r rps p50 p99 cpu < <(measure "$tp" "$proxy_pid"); T_RPS+=("$rps"); T_P50+=("$p50"); T_P99+=("$p99"); T_CPU+=("$cpu");;
      direct) read -r rps p50 p99 _ < <(measure "$b1" 0); D_RPS+=("$rps"); D_P50+=("$p50"); D_P99+=("$p99");;
    esac
  done
  i=$((r - 1))
  R_RPS+=("$(awk -v a="${T_RPS[$i]}" -v b="${N_RPS[$i]}" 'BEGIN{printf "%.3f", a/b}')")
  R_P99+=("$(awk -v a="${T_P99[$i]}" -v b="${N_P99[$i]}" 'BEGIN{printf "%.3f", a/b}')")
  R_CPU+=("$(awk -v a="${T_CPU[$i]}" -v b="${N_CPU[$i]}" 'BEGIN{printf "%.3f", (a > 0 ? b/a : 0)}')")
  echo "round $r: nginx ${N_RPS[$i]} req/s p99 ${N_P99[$i]} us ${N_CPU[$i]} us CPU/req | proxy ${T_RPS[$i]} req/s p99 ${T_P99[$i]} us ${T_CPU[$i]} us CPU/req | direct ${D_RPS[$i]} req/s" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{printf "[%s, %s]", lo, hi}'; }

echo
echo "threadline proxy vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), one worker each on CPU $PROXY_CPU; wrk -t1 -c$CONNS -d${DURATION}s and the backend on CPU $LOAD_CPU; $ROUNDS rounds"
echo
printf '| %-18s | %10s | %8s | %8s | %12s |\n' "target" "req/s" "p50 us" "p99 us" "CPU us/req"
printf '|%s|%s|%s|%s|%s|\n' "--------------------" "------------" "----------" "----------" "--------------"
printf '| %-18s | %10s | %8s | %8s | %12s |\n' "nginx" "$(median "${N_RPS[@]}")" "$(median "${N_P50[@]}")" "$(median "${N_P99[@]}")" "$(median "${N_CPU[@]}")"
printf '| %-18s | %10s | %8s | %8s | %12s |\n' "threadline proxy" "$(median "${T_RPS[@]}")" "$(median "${T_P50[@]}")" "$(median "${T_P99[@]}")" "$(median "${T_CPU[@]}")"
printf '| %-18s | %10s | %8s | %8s | %12s |\n' "backend directly" "$(median "${D_RPS[@]}")" "$(median "${D_P50[@]}")" "$(median "${D_P99[@]}")" "-"
echo
echo "paired per round (median [min, max]):"
echo "  proxy / nginx requests/s: $(median "${R_RPS[@]}") $(range "${R_RPS[@]}")   (goal >= 1.0)"
echo "  proxy / nginx p99:        $(median "${R_P99[@]}") $(range "${R_P99[@]}")   (goal <= 1.2)"
echo "  nginx / proxy CPU per request (the throughput ratio a saturated core would give): $(median "${R_CPU[@]}") $(range "${R_CPU[@]}")"
tm=$(median "${T_RPS[@]}"); dm=$(median "${D_RPS[@]}"); nm=$(median "${N_RPS[@]}")
awk -v t="$tm" -v d="$dm" -v n="$nm" 'BEGIN {
  printf "  proxy vs the backend directly: %.2fx the requests/s\n", t/d }'
tp50=$(median "${T_P50[@]}"); dp50=$(median "${D_P50[@]}")
echo "  added median latency through the proxy at $CONNS connections: $((tp50 - dp50)) us"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
echo
echo "resident memory with $IDLE idle keep-alive connections (each served one request):"
for v in nginx proxy; do
  if [ $v = nginx ]; then port=$np; pid=$nginx_pid; else port=$tp; pid=$proxy_pid; fi
  before=$(rss_kib "$pid")
  taskset -c "$LOAD_CPU" "$idle_bin" "127.0.0.1:$port" "$IDLE" > "$work/idle.out" & hold=$!
  for _ in $(seq 1 600); do grep -q held "$work/idle.out" 2>/dev/null && break; sleep 0.1; done
  if grep -q held "$work/idle.out"; then
    sleep 1
    after=$(rss_kib "$pid")
    echo "  $v: $((before / 1024)) MiB before, $((after / 1024)) MiB with $IDLE idle connections ($(( (after - before) * 1024 / IDLE )) bytes per connection)"
  else
    echo "  $v: the idle connections could not all be opened (see ulimit -n)"
  fi
  kill $hold 2>/dev/null || true; wait $hold 2>/dev/null || true
  sleep 1
done
