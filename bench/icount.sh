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
#   or build/bench/body_en_1000_1.json (written by make bench). Several files (a glob:
#   ICOUNT_BODY="build/bench/body_1000_*.json") are sent in turn, as distinct clients' bodies
#   would be: one body repeated lets LuaJIT find every string of it already interned.
#   ICOUNT_SERVER: more server settings, e.g. ICOUNT_SERVER="gc_idle_step: 0".
#   ICOUNT_PROVIDER: the proxied model's provider (default cohere; jina, voyage, tei, ...
#   whose answers the mock's Cohere-shaped results[] also satisfy).
#   ICOUNT_KEEP=DIR: keep the worker's two callgrind profiles there (callgrind_annotate them).
set -eu
cd "$(dirname "$0")/.."
P=${1:-build/bench/proxy}
BIN=${RERANKD_BIN:-./rerankd}
N1=${ICOUNT_N1:-50}
N2=${ICOUNT_N2:-350}
command -v valgrind >/dev/null || { echo "bench/icount.sh: valgrind not installed" >&2; exit 1; }
BODY=${ICOUNT_BODY:-$P/body.json}
if [ -n "${ICOUNT_BODY:-}" ]; then
    for f in $BODY; do
        [ -f "$f" ] || { echo "bench/icount.sh: $f not found (make bench writes build/bench/body_*.json)" >&2; exit 1; }
    done
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
  - { name: fast, provider: ${ICOUNT_PROVIDER:-cohere}, model: rerank-v3.5, api_key: bench-key, base_url: "http://127.0.0.1:$MP", timeout: 10s }
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
    # one curl, one keep-alive connection: each request with the next body in turn (--next)
    args="" n=0
    while [ "$n" -lt "$1" ]; do
        for f in $BODY; do
            [ "$n" -lt "$1" ] || break
            args="$args --next -s -o /dev/null -H content-type:application/json --data-binary @$f http://127.0.0.1:$RP/v1/rerank"
            n=$((n + 1))
        done
    done
    # shellcheck disable=SC2086 # one option per word
    curl ${args# --next}
    kill "$vp"; wait "$vp" 2>/dev/null || true
    # the largest profile is the worker's (the master only forks and waits)
    f=$(ls -S "$T"/cg."$1".* | head -1)
    [ -z "${ICOUNT_KEEP:-}" ] || { mkdir -p "$ICOUNT_KEEP" && cp "$f" "$ICOUNT_KEEP/callgrind.out.$1"; }
    awk '/^(summary|totals):/ { print $2; exit }' "$f"
}
a=$(count "$N1")
b=$(count "$N2")
set -- $BODY
echo "instructions per request: $(( (b - a) / (N2 - N1) )) ($BIN, $(basename "$1")$([ $# -gt 1 ] && echo " and $(($# - 1)) more"), $N2 - $N1 requests)"
