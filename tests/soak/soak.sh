#!/bin/sh
# make soak: mixed load on the real daemon for SOAK_SECONDS (default 600), sampling its RSS
# and open descriptors every SOAK_INTERVAL seconds; exits non-zero on a growth trend.
#
# Load: wrk (tests/soak/mix.lua: bm25, a mock upstream, /v1/fuse, a fusion pipeline, upstream
# 500s with and without fallback, client errors, /health, upstream text that is not UTF-8, a
# forged x-request-id) plus a curl loop of clients that hang
# up while the upstream is busy, libevent-level rejects (huge header) and odd methods.
# Upstream: tests/mock/mock_upstream.py. Everything on 127.0.0.1.
#
# Verdict: after SOAK_WARMUP seconds (default: a fifth of the run, at most 60), the mean of the
# last third of the samples must not exceed the mean of the first third by more than
# SOAK_RSS_SLACK_KB (default 8192) + SOAK_RSS_SLACK_PCT % (default 10) of it, nor by more than
# SOAK_FD_SLACK descriptors (default 16); no 500s, no statuses outside the expected set, the
# daemon alive and healthy at the end, rerankd_script_errors_total 0.
#   SOAK_SECONDS=60 make soak       a short run
#   SOAK_WORKERS (default 2), SOAK_CONNECTIONS (wrk -c, default 16)
set -eu
cd "$(dirname "$0")/../.."
SECS=${SOAK_SECONDS:-600}
INTERVAL=${SOAK_INTERVAL:-5}
WARMUP=${SOAK_WARMUP:-$(( SECS / 5 > 60 ? 60 : SECS / 5 ))}
RSS_SLACK_KB=${SOAK_RSS_SLACK_KB:-8192}
RSS_SLACK_PCT=${SOAK_RSS_SLACK_PCT:-10}
FD_SLACK=${SOAK_FD_SLACK:-16}
WORKERS=${SOAK_WORKERS:-2}
CONNS=${SOAK_CONNECTIONS:-16}
W=build/soak
mkdir -p "$W"
rm -f "$W"/*

command -v wrk >/dev/null || { echo "soak: wrk is not installed" >&2; exit 2; }
[ -x ./rerankd ] || { echo "soak: ./rerankd is not built (make build)" >&2; exit 2; }

MOCK_PID="" D_PID="" LOOP_PID="" WRK_PID=""
cleanup() {
    for p in $LOOP_PID $WRK_PID $D_PID $MOCK_PID; do kill "$p" 2>/dev/null || true; done
    for p in $LOOP_PID $WRK_PID $D_PID $MOCK_PID; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# wait_for FILE PATTERN: prints the port from "listening on 127.0.0.1:PORT"
wait_port() {
    i=0
    while [ $i -lt 100 ]; do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$1" | head -1)
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

python3 tests/mock/mock_upstream.py --port 0 > "$W/mock.log" 2>&1 &
MOCK_PID=$!
MOCK_PORT=$(wait_port "$W/mock.log") || { echo "soak: the mock upstream did not start" >&2; cat "$W/mock.log" >&2; exit 1; }
M="http://127.0.0.1:$MOCK_PORT"

cat > "$W/soak.yaml" <<EOF
server: { auth: none, listen: "127.0.0.1:0", timeout: 10s, keepalive: 5s }
routing: { breaker: { failures: 0 } }
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
  - { name: mock, provider: cohere, api_key: test-key, base_url: "$M/cohere", timeout: 5s }
  - { name: broken, provider: cohere, api_key: test-key, base_url: "$M/fault/500/cohere" }
  - { name: fallback, provider: cohere, api_key: test-key, base_url: "$M/fault/500/cohere", fallbacks: [bm25] }
  - { name: slow, provider: cohere, api_key: test-key, base_url: "$M/fault/slow:400/cohere", timeout: 5s }
  - { name: badutf8, provider: cohere, api_key: test-key, base_url: "$M/fault/badutf8/cohere" }
pipelines:
  - name: hybrid
    stages:
      - fuse: { method: rrf, k: 60 }
      - rerank: { model: bm25, candidates: 10 }
EOF
RERANKD_HOME=$PWD ./rerankd -c "$W/soak.yaml" -p 0 -w "$WORKERS" > "$W/rerankd.log" 2>&1 &
D_PID=$!
PORT=$(wait_port "$W/rerankd.log") || { echo "soak: rerankd did not start" >&2; cat "$W/rerankd.log" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"
echo "soak: rerankd pid $D_PID on $URL, $WORKERS workers, mock upstream $M; ${SECS}s, a sample every ${INTERVAL}s after ${WARMUP}s of warm-up"

# side load: hang-ups while the upstream sleeps, libevent rejects, odd methods
BIGHDR=$(head -c 70000 /dev/zero | tr '\0' a)
(
    while :; do
        curl -s -o /dev/null --max-time 0.1 -H 'Content-Type: application/json' \
            -d '{"model":"slow","query":"cats","documents":["a cat","a dog"]}' "$URL/v1/rerank" || true
        curl -s -o /dev/null -H "X-Big: $BIGHDR" "$URL/health" || true
        curl -s -o /dev/null -X PROPFIND "$URL/v1/rerank" || true
        sleep 0.2
    done
) > /dev/null 2>&1 &
LOOP_PID=$!

wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s tests/soak/mix.lua "$URL" > "$W/wrk.txt" 2>&1 &
WRK_PID=$!

sample() {
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$D_PID/status" 2>/dev/null || echo 0)
    fds=$(ls "/proc/$D_PID/fd" 2>/dev/null | wc -l)
    echo "$1 ${rss:-0} $fds"
}

: > "$W/samples.txt"
t=0
echo "    t(s)   RSS(kB)  fds"
while kill -0 "$WRK_PID" 2>/dev/null; do
    sleep "$INTERVAL"
    t=$((t + INTERVAL))
    kill -0 "$D_PID" 2>/dev/null || { echo "soak: rerankd died at ${t}s" >&2; tail -20 "$W/rerankd.log" >&2; exit 1; }
    s=$(sample "$t")
    printf '  %6s %9s %4s\n' $s
    [ "$t" -gt "$WARMUP" ] && [ "$t" -lt "$SECS" ] && echo "$s" >> "$W/samples.txt"
done
wait "$WRK_PID" || true
WRK_PID=""
kill "$LOOP_PID" 2>/dev/null || true
wait "$LOOP_PID" 2>/dev/null || true
LOOP_PID=""

fail=0
echo
grep -E '^(STATUS|ERRORS|REQUESTS|Requests/sec)' "$W/wrk.txt" | sed 's/^/  wrk: /'
# expected: 200, 400 (client errors), 404 (unknown model), 502 (upstream 500 without fallback)
bad=$(awk '$1 == "STATUS" && $2 != 200 && $2 != 400 && $2 != 404 && $2 != 502 { n += $3 } END { print n + 0 }' "$W/wrk.txt")
ok=$(awk '$1 == "STATUS" && $2 == 200 { print $3 }' "$W/wrk.txt")
if [ "$bad" -gt 0 ] || [ -z "$ok" ]; then
    echo "soak: FAIL: $bad answers with an unexpected status (or no 200s at all)"
    fail=1
fi
if ! kill -0 "$D_PID" 2>/dev/null; then
    echo "soak: FAIL: rerankd is not running"
    exit 1
fi
hc=$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")
[ "$hc" = 200 ] || { echo "soak: FAIL: /health answered $hc"; fail=1; }
# every access-log line (stderr) is one JSON object; a forged x-request-id added no field
badlog=$(python3 -c '
import json, sys
bad = 0
for line in open(sys.argv[1], "rb"):
    if line.startswith(b"{"):
        try:
            j = json.loads(line.decode("utf-8"))
            bad += "key" in j
        except ValueError:
            bad += 1
print(bad)' "$W/rerankd.log")
[ "$badlog" = 0 ] || { echo "soak: FAIL: $badlog access-log lines are not JSON or carry a forged field"; fail=1; }
se=$(curl -s "$URL/metrics" | awk '/^rerankd_script_errors_total/ { print $2 }')
[ "${se:-0}" = 0 ] || { echo "soak: FAIL: rerankd_script_errors_total $se"; fail=1; }

# the trend: mean of the first third vs the last third of the post-warm-up samples
verdict=$(awk -v rs="$RSS_SLACK_KB" -v rp="$RSS_SLACK_PCT" -v fs="$FD_SLACK" '
    { t[NR] = $1; r[NR] = $2; f[NR] = $3 }
    END {
        n = NR
        if (n < 3) { print "SKIP too few samples (" n "): run longer or sample more often"; exit }
        k = int(n / 3)
        for (i = 1; i <= k; i++) { r1 += r[i]; f1 += f[i]; r3 += r[n - k + i]; f3 += f[n - k + i] }
        r1 /= k; f1 /= k; r3 /= k; f3 /= k
        rl = r1 + rs + r1 * rp / 100; fl = f1 + fs
        v = (r3 > rl || f3 > fl) ? "FAIL" : "PASS"
        printf "%s RSS %.0f -> %.0f kB (limit %.0f), fds %.1f -> %.1f (limit %.1f), %d samples, first/last third %d each\n", v, r1, r3, rl, f1, f3, fl, n, k
    }' "$W/samples.txt")
echo "soak: trend: $verdict"
case $verdict in
    FAIL*) fail=1 ;;
    SKIP*) ;;
esac
if [ "$fail" = 0 ]; then echo "soak: PASS"; else echo "soak: FAIL (logs in $W/)"; fi
exit $fail
