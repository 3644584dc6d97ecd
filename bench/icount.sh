#!/bin/sh
# Work per proxied request, repeatable where req/s on a shared machine is not: callgrind
# counts the instructions rerankd (1 worker) executes for N1 and N2 requests of bench/proxy.sh's
# 100 x 1 KB body over one keep-alive connection, with the nginx mock of bench/proxy.sh as the
# upstream, and prints (count(N2) - count(N1)) / (N2 - N1): start-up and exit cancel out.
#   sh bench/icount.sh [WORKDIR]     needs a previous `sh bench/proxy.sh` (its body and mock
#                                    config, default build/bench/proxy) and valgrind
# Env: RERANKD_BIN (./rerankd; its directory is RERANKD_HOME), ICOUNT_N1 (50), ICOUNT_N2 (350).
#   ICOUNT_BODY=FILE: that body instead of the proxy benchmark's, against rerankd's own local
#   models (bm25; bm25-en with language english) and no mock, e.g. ICOUNT_BODY=build/bench/body_100_1.json
#   or build/bench/body_en_1000_1.json (written by make bench).
#   ICOUNT_SERVER: more server settings, e.g. ICOUNT_SERVER="gc_idle_step: 0".
set -eu
cd "$(dirname "$0")/.."
P=${1:-build/bench/proxy}
BIN=${RERANKD_BIN:-./rerankd}
N1=${ICOUNT_N1:-50}
N2=${ICOUNT_N2:-350}
command -v valgrind >/dev/null || { echo "bench/icount.sh: valgrind not installed" >&2; exit 1; }
BODY=${ICOUNT_BODY:-$P/body.json}
if [ -n "${ICOUNT_BODY:-}" ]; then
    [ -f "$BODY" ] || { echo "bench/icount.sh: $BODY not found (make bench writes build/bench/body_*.json)" >&2; exit 1; }
else
    [ -f "$BODY" ] && [ -f "$P/mock/nginx.conf" ] || { echo "bench/icount.sh: run sh bench/proxy.sh first" >&2; exit 1; }
fi
T=$(mktemp -d)
MOCK_PID=""
cleanup() {
    [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# rerankd (and for the proxy body the mock, from proxy.sh's configuration) on fresh ports
RP=$(free_port)
SERVER="server: { auth: none, listen: \"127.0.0.1:$RP\", max_body: 16m, timeout: 30s${ICOUNT_SERVER:+, $ICOUNT_SERVER} }"
if [ -n "${ICOUNT_BODY:-}" ]; then
    cat > "$T/r.yaml" <<EOF
$SERVER
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
  - { name: bm25-en, provider: bm25, language: english }
EOF
else
    MP=$(free_port)
    mkdir -p "$T/mock"
    sed -e "s|listen 127.0.0.1:[0-9]*|listen 127.0.0.1:$MP|" -e "s|^pid .*|pid $T/mock/nginx.pid;|" \
        -e "s|^error_log .*|error_log $T/mock/error.log warn;|" "$P/mock/nginx.conf" > "$T/mock/nginx.conf"
    nginx -c "$T/mock/nginx.conf" -p "$T/mock" -g 'daemon off;' 2>/dev/null &
    MOCK_PID=$!
    cat > "$T/r.yaml" <<EOF
$SERVER
default_model: fast
models:
  - { name: fast, provider: cohere, model: rerank-v3.5, api_key: bench-key, base_url: "http://127.0.0.1:$MP", timeout: 10s }
EOF
fi
count() { # N -> instructions of rerankd for N requests
    RERANKD_HOME=$(cd "$(dirname "$BIN")" && pwd) valgrind --tool=callgrind --trace-children=yes \
        --callgrind-out-file="$T/cg.$1.%p" "$BIN" -c "$T/r.yaml" -w 1 > "$T/log.$1" 2>&1 &
    vp=$!
    i=0
    until curl -s -o /dev/null "http://127.0.0.1:$RP/health"; do
        i=$((i + 1)); [ $i -lt 300 ] || { echo "bench/icount.sh: rerankd did not start" >&2; exit 1; }; sleep 0.2
    done
    urls=""
    for _ in $(seq 1 "$1"); do urls="$urls http://127.0.0.1:$RP/v1/rerank"; done
    # shellcheck disable=SC2086 # one URL per word: curl reuses the connection
    curl -s -H 'content-type: application/json' --data-binary @"$BODY" $urls > /dev/null
    kill "$vp"; wait "$vp" 2>/dev/null || true
    # the largest profile is the worker's (the master only forks and waits)
    f=$(ls -S "$T"/cg."$1".* | head -1)
    awk '/^(summary|totals):/ { print $2; exit }' "$f"
}
a=$(count "$N1")
b=$(count "$N2")
echo "instructions per request: $(( (b - a) / (N2 - N1) )) ($BIN, $(basename "$BODY"), $N2 - $N1 requests)"
