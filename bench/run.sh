#!/bin/sh
# make bench: in-process kernel micro-benchmarks (bench/bench_kernels.c) and the
# real daemon over HTTP (wrk + bench/post.lua), each against a baseline measured
# in the same run. Prints one Markdown table. Work files go to build/bench/.
#   BENCH_SECONDS=10 (wrk throughput run), BENCH_LAT_SECONDS=5 (latency runs),
#   RERANKD_BIN=./rerankd (the daemon under test; also for bench/proxy.sh),
#   BENCH_PERF=1 (bench/proxy.sh profiles rerankd under load with perf; off by default),
#   BENCH_ICOUNT=1 (instructions per request under callgrind, bench/icount.sh: the proxy body
#   and the bm25 bodies; repeatable where times on a shared machine are not; off by default)
set -eu
cd "$(dirname "$0")/.."
B=build/bench
CC=${CC:-cc}
SECS=${BENCH_SECONDS:-10}
LAT_SECS=${BENCH_LAT_SECONDS:-5}
ROUND_SECS=${BENCH_ROUND_SECONDS:-2}
RERANKD_BIN=${RERANKD_BIN:-./rerankd}
export RERANKD_BIN
mkdir -p "$B"

PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# ---- in-process kernels ----
make -s build/topk.o build/tokenize.o build/analyzer.o build/bm25.o build/bm25_par.o build/bm25_prf.o >&2
SQL_DEF="" SQL_LIB=""
if printf '#include <sqlite3.h>\n' | $CC -E - >/dev/null 2>&1; then
    SQL_DEF="-DHAVE_SQLITE" SQL_LIB="-lsqlite3"
else
    echo "bench: sqlite3.h not found (apt-get install libsqlite3-dev): FTS5 rows skipped" >&2
fi
# shellcheck disable=SC2046,SC2086 # flags are word lists
$CC -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE $SQL_DEF $(pkg-config --cflags luajit) -Icore \
    -o "$B/bench_kernels" bench/bench_kernels.c build/topk.o build/tokenize.o build/analyzer.o build/bm25.o build/bm25_par.o build/bm25_prf.o $SQL_LIB -lstemmer -lpthread -lm
"$B/bench_kernels" --dump "$B"
echo "bench: kernels..." >&2
"$B/bench_kernels" > "$B/kernels.txt"
kv() { awk -v k="$1" '$1 == k { print $2 }' "$B/kernels.txt"; }

# ---- daemon over HTTP ----
HTTP=1
if [ "$RERANKD_BIN" = ./rerankd ] && [ ! -x ./rerankd ] && ! make -s rerankd >&2; then
    echo "bench: ./rerankd does not build: HTTP rows skipped" >&2
    HTTP=0
elif [ ! -x "$RERANKD_BIN" ]; then
    echo "bench: $RERANKD_BIN is not an executable: HTTP rows skipped" >&2
    HTTP=0
fi
command -v wrk >/dev/null || { echo "bench: wrk not installed: HTTP rows skipped" >&2; HTTP=0; }
command -v luajit >/dev/null || { echo "bench: luajit not installed: HTTP rows skipped" >&2; HTTP=0; }
WORKERS=$(nproc)
PORT=""
if [ "$HTTP" = 1 ]; then
    luajit bench/gen.lua "$B"
    cat > "$B/bench.yaml" <<EOF
server:
  listen: "127.0.0.1:8080"
  auth: none
  workers: $WORKERS
  max_body: 16m
default_model: bm25
models:
  - name: bm25
    provider: bm25
  - name: bm25-en
    provider: bm25
    language: english
  # shadow traffic's cost: every request scored again by bm25 after its answer
  - name: bm25-shadowed
    provider: bm25
    shadow: { model: bm25, sample: 1.0, max_inflight: 64 }
EOF
    # A random free port; retry if another process takes it first.
    for _ in 1 2 3 4 5; do
        p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 ))
        if curl -s -o /dev/null "http://127.0.0.1:$p/" 2>/dev/null; then continue; fi
        "$RERANKD_BIN" -c "$B/bench.yaml" -p "$p" -w "$WORKERS" > "$B/rerankd.log" 2>&1 &
        PID=$!
        i=0
        while [ $i -lt 50 ]; do
            if curl -sf -o /dev/null "http://127.0.0.1:$p/health"; then PORT=$p; break; fi
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
            i=$((i + 1))
        done
        [ -n "$PORT" ] && break
        cleanup
    done
    if [ -z "$PORT" ]; then
        echo "bench: rerankd did not come up (see $B/rerankd.log): HTTP rows skipped" >&2
        HTTP=0
    fi
fi

URL="http://127.0.0.1:$PORT"
# run_wrk NAME BODY_FILE THREADS CONNS SECONDS PATH -> $B/wrk_NAME.txt
run_wrk() {
    echo "bench: wrk $1..." >&2
    BENCH_BODY="$2" wrk -t"$3" -c"$4" -d"$5"s -s bench/post.lua "$URL$6" > "$B/wrk_$1.txt" 2>&1 || true
    grep '^RESULT' "$B/wrk_$1.txt" || echo "RESULT p50=0 p99=0 rps=0 requests=0 errors=1"
}
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

if [ "$HTTP" = 1 ]; then
    # sanity: a real ranking comes back
    code=$(curl -s -o "$B/resp_100.json" -w '%{http_code}' -H 'content-type: application/json' \
        --data-binary "@$B/body_100_1.json" "$URL/v1/rerank")
    if [ "$code" != 200 ] || ! grep -q '"relevance_score"' "$B/resp_100.json"; then
        echo "bench: POST /v1/rerank answered $code: $(head -c 300 "$B/resp_100.json")" >&2
        exit 1
    fi
    B100=$(echo "$B"/body_100_*.json)
    B1000=$(echo "$B"/body_1000_*.json)
    L100=$(run_wrk lat100 "$B100" 1 1 "$LAT_SECS" /v1/rerank)
    L1000=$(run_wrk lat1000 "$B1000" 1 1 "$LAT_SECS" /v1/rerank)
    L100EN=$(run_wrk lat100en "$(echo "$B"/body_en_100_*.json)" 1 1 "$LAT_SECS" /v1/rerank)
    L1000EN=$(run_wrk lat1000en "$(echo "$B"/body_en_1000_*.json)" 1 1 "$LAT_SECS" /v1/rerank)
    # The two FTS5 goals in rounds: FTS5 in process, then the HTTP row compared with it, five
    # times over; each round gives a ratio and the median is judged, so that a slow spell of
    # the machine hits both sides of a ratio rather than one (the rows above are one-offs).
    ROUNDS=""
    if [ -n "$SQL_DEF" ]; then
        for r in 1 2 3 4 5; do
            f=$("$B/bench_kernels" --fts5 fts5 0 1000 15 | awk '$1 == "fts5_1000_total_p50_us" { print $2 }')
            h=$(field "$(run_wrk "round${r}_1000" "$B1000" 1 1 "$ROUND_SECS" /v1/rerank)" p50)
            fp=$("$B/bench_kernels" --fts5 fts5porter 1 1000 15 | awk '$1 == "fts5porter_1000_total_p50_us" { print $2 }')
            he=$(field "$(run_wrk "round${r}_1000en" "$(echo "$B"/body_en_1000_*.json)" 1 1 "$ROUND_SECS" /v1/rerank)" p50)
            ROUNDS="$ROUNDS $f:$h:$fp:$he"
        done
    fi
    T100=$(run_wrk rps100 "$B100" 2 32 "$SECS" /v1/rerank)
    # the same bodies naming the shadowed model (shadow: {model: bm25, sample: 1.0})
    BS100=""
    for f in $B100; do
        sed 's/"model":"bm25"/"model":"bm25-shadowed"/' "$f" > "$f.shadow"
        BS100="$BS100 $f.shadow"
    done
    TSH100=$(run_wrk rps100shadow "${BS100# }" 2 32 "$SECS" /v1/rerank)
    SHADOW_RUNS=$(curl -s "$URL/metrics" | awk '/^rerankd_shadow_requests_total/ {
        o = $1; sub(/.*outcome="/, "", o); sub(/".*/, "", o); n[o] += $2 }
        END { printf "%d run, %d dropped", n["ok"], n["dropped"] }')
    THEALTH=$(run_wrk health "" 2 32 "$SECS" /health)
    # the worst /v1/fuse body the default limits let through (bench/gen_fuse.lua): the median
    # of 3 runs per method, the slowest method reported; and the 40k-list body, now refused
    echo "bench: worst-case fuse..." >&2
    luajit bench/gen_fuse.lua "$B"
    FUSE_WORST="" FUSE_WORST_M=""
    for m in rrf borda dbsf linear combmed; do
        sed "s/^{/{\"method\":\"$m\",/" "$B/fuse_worst.json" > "$B/fuse_worst_$m.json"
        t=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{time_total}\n' -H 'content-type: application/json' \
            --data-binary "@$B/fuse_worst_$m.json" "$URL/v1/fuse"; done | sort -n | sed -n 2p)
        if [ -z "$FUSE_WORST" ] || awk -v a="$t" -v b="$FUSE_WORST" 'BEGIN { exit !(a > b) }'; then
            FUSE_WORST=$t FUSE_WORST_M=$m
        fi
    done
    FUSE_WORST_KB=$(( $(wc -c < "$B/fuse_worst.json") / 1024 ))
    FUSE_40K=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H 'content-type: application/json' \
        --data-binary "@$B/fuse_40k.json" "$URL/v1/fuse")
fi
cleanup

# ---- fusion kernels (bench/bench_fusion.lua prints its own rows) ----
echo "bench: fusion kernels..." >&2
FUSION_ROWS=$(luajit bench/bench_fusion.lua "$B" 2>/dev/null || true)

# ---- proxy vs nginx proxy_pass, RSS, 1 -> N workers (bench/proxy.sh -> $B/proxy.txt) ----
PROXY=0
if [ "$HTTP" = 1 ] && sh bench/proxy.sh "$B" > /dev/null && ! grep -q '^skipped' "$B/proxy.txt"; then PROXY=1; fi
pv() { awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$B/proxy.txt"; }

# ---- the table ----
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "rerankd bench: $(date -u +%Y-%m-%dT%H:%MZ), nproc $(nproc), CPU: ${cpu:-unknown}, workers $WORKERS, wrk and rerankd on the same machine"
echo
fmt() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else if (v >= 100) printf "%.0f", v; else printf "%.1f", v }'; }
# the median of the numbers on stdin, one a line (empty lines skipped; nothing when none)
median() { sort -g | awk 'NF { v[++n] = $1 } END { if (n) print v[int((n + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a + 0 == 0 || b + 0 == 0) print "n/a"; else printf "%.1f×", b / a }'; }
echo "| benchmark | rerankd | baseline (same run) | baseline | ratio |"
echo "|---|---|---|---|---|"
echo "| top-k, k=100 of 1,000,000 random doubles | $(fmt "$(kv topk_1m_k100_us)") µs | qsort of the 1,000,000 doubles | $(fmt "$(kv qsort_1m_us)") µs | $(ratio "$(kv topk_1m_k100_us)" "$(kv qsort_1m_us)") faster |"
echo "| top-k, full sort of 1,000,000 (k=n) | $(fmt "$(kv topk_1m_full_us)") µs | qsort of the 1,000,000 doubles | $(fmt "$(kv qsort_1m_us)") µs | $(ratio "$(kv topk_1m_full_us)" "$(kv qsort_1m_us)") |"
echo "| top-k, k=10 of 1,000 (one request, top_n 10) | $(fmt "$(kv topk_1k_k10_us)") µs | | | |"
echo "| top-k, all 1,000 in order (one request, no top_n) | $(fmt "$(kv topk_1k_full_us)") µs | | | |"
for n in 100 1000; do
    echo "| BM25 in-process, $n docs × ~$(kv doc_bytes_avg) B, p50 / p99 | $(fmt "$(kv bm25_${n}_p50_us)") / $(fmt "$(kv bm25_${n}_p99_us)") µs | SQLite FTS5: build index + bm25() top 10, p50 | $(fmt "$(kv fts5_${n}_total_p50_us)") µs (query alone $(fmt "$(kv fts5_${n}_rank_p50_us)")) | $(ratio "$(kv bm25_${n}_p50_us)" "$(kv fts5_${n}_total_p50_us)") faster |"
    echo "| BM25 in-process, English stemming (Snowball), $n docs, p50 / p99 | $(fmt "$(kv bm25en_${n}_p50_us)") / $(fmt "$(kv bm25en_${n}_p99_us)") µs | SQLite FTS5 \`porter\` tokenizer: build index + bm25() top 10, p50 | $(fmt "$(kv fts5porter_${n}_total_p50_us)") µs (query alone $(fmt "$(kv fts5porter_${n}_rank_p50_us)")) | $(ratio "$(kv bm25en_${n}_p50_us)" "$(kv fts5porter_${n}_total_p50_us)") faster |"
done
if [ "$HTTP" = 1 ]; then
    for n in 100 1000; do
        if [ "$n" = 100 ]; then r=$L100; else r=$L1000; fi
        echo "| HTTP POST /v1/rerank bm25, $n docs, top_n 10, 1 connection, p50 / p99 | $(fmt "$(field "$r" p50)") / $(fmt "$(field "$r" p99)") µs | in-process BM25 p50 (above) | $(fmt "$(kv bm25_${n}_p50_us)") µs | HTTP+JSON overhead $(awk -v a="$(field "$r" p50)" -v b="$(kv bm25_${n}_p50_us)" 'BEGIN { printf "%.0f µs", a - b }') |"
        if [ "$n" = 100 ]; then r=$L100EN; else r=$L1000EN; fi
        echo "| HTTP POST /v1/rerank bm25 \`language: english\`, $n docs, top_n 10, 1 connection, p50 / p99 | $(fmt "$(field "$r" p50)") / $(fmt "$(field "$r" p99)") µs | SQLite FTS5 \`porter\` build+rank p50 (in-process, above) | $(fmt "$(kv fts5porter_${n}_total_p50_us)") µs | $(ratio "$(field "$r" p50)" "$(kv fts5porter_${n}_total_p50_us)") faster |"
    done
    echo "| HTTP req/s, 100 docs, wrk -t2 -c32 -d${SECS}s | $(fmt "$(field "$T100" rps)") req/s (p99 $(fmt "$(field "$T100" p99)") µs, errors $(field "$T100" errors)) | GET /health, same wrk settings | $(fmt "$(field "$THEALTH" rps)") req/s | $(awk -v a="$(field "$T100" rps)" -v b="$(field "$THEALTH" rps)" 'BEGIN { if (b > 0) printf "%.2f of /health", a / b; else print "n/a" }') |"
    echo "| shadow traffic: primary req/s with \`shadow: {model: bm25, sample: 1.0, max_inflight: 64}\`, 100 docs, wrk -t2 -c32 -d${SECS}s (shadows: $SHADOW_RUNS) | $(fmt "$(field "$TSH100" rps)") req/s (p99 $(fmt "$(field "$TSH100" p99)") µs, errors $(field "$TSH100" errors)) | the same model without shadow (row above) | $(fmt "$(field "$T100" rps)") req/s | $(awk -v a="$(field "$TSH100" rps)" -v b="$(field "$T100" rps)" 'BEGIN { if (b > 0) printf "%.2f of no shadow", a / b; else print "n/a" }') |"
else
    echo "| HTTP rows | n/a (see messages above) | | | |"
fi
[ -n "$FUSION_ROWS" ] && echo "$FUSION_ROWS"
if [ "$HTTP" = 1 ]; then
    ms() { awk -v s="$1" 'BEGIN { if (s == "") print "n/a"; else printf "%.0f ms", s * 1000 }'; }
    echo "| worst-case POST /v1/fuse under the default limits: 1,000 lists × 100 items, 100,000 distinct ids ($FUSE_WORST_KB KB), slowest method ($FUSE_WORST_M), median of 3 | $(ms "$FUSE_WORST") | 40,000 one-item lists (the body that took 22.5 s before issue 14) | $(echo "$FUSE_40K" | cut -d' ' -f1) in $(ms "$(echo "$FUSE_40K" | cut -d' ' -f2)") | refused over \`server.max_fuse_lists\` |"
fi
mb() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else printf "%.1f MB", v / 1024 }'; }
# verdict VALUE OP LIMIT -> met | missed
verdict() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { if (a == "" || a == "n/a") { print "n/a"; exit }
    ok = (op == "<=") ? (a + 0 <= b + 0) : (a + 0 >= b + 0); print ok ? "**met**" : "**missed**" }'; }
if [ "$PROXY" = 1 ]; then
    N=$(pv workers_n)
    kb=$(awk -v b="$(pv body_bytes)" 'BEGIN { printf "%.0f", b / 1024 }')
    dp50=$(awk -v a="$(pv rerankd_lat_p50)" -v b="$(pv nginx_lat_p50)" 'BEGIN { print a - b }')
    dp99=$(awk -v a="$(pv rerankd_lat_p99)" -v b="$(pv nginx_lat_p99)" 'BEGIN { print a - b }')
    share1=$(awk -v a="$(pv rerankd_rps_rps)" -v b="$(pv nginx_rps_rps)" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
    echo "| proxy: POST 100 docs × 1 KB ($kb KB) → fast mock upstream (nginx \`return 200\`, Cohere v2 answer), 1 connection, p50 / p99 | $(fmt "$(pv rerankd_lat_p50)") / $(fmt "$(pv rerankd_lat_p99)") µs | nginx \`proxy_pass\` (keepalive upstream) → same mock, p50 / p99 | $(fmt "$(pv nginx_lat_p50)") / $(fmt "$(pv nginx_lat_p99)") µs | added p50 $(fmt "$dp50") µs, p99 $(fmt "$dp99") µs |"
    echo "| proxy: the mock alone (no proxy), same body, p50 / p99 | | | $(fmt "$(pv direct_p50)") / $(fmt "$(pv direct_p99)") µs | |"
    echo "| proxy: req/s, 1 worker, wrk -t2 -c32 -d${SECS}s | $(fmt "$(pv rerankd_rps_rps)") req/s (p99 $(fmt "$(pv rerankd_rps_p99)") µs, errors $(pv rerankd_rps_errors)) | nginx \`proxy_pass\`, 1 worker | $(fmt "$(pv nginx_rps_rps)") req/s (p99 $(fmt "$(pv nginx_rps_p99)") µs) | $share1 of nginx |"
    if [ -n "$(pv rerankd_rps_nw_rps)" ]; then
        echo "| proxy: req/s, $N workers, wrk -t2 -c32 -d${SECS}s | $(fmt "$(pv rerankd_rps_nw_rps)") req/s (p99 $(fmt "$(pv rerankd_rps_nw_p99)") µs) | nginx \`proxy_pass\`, $N workers | $(fmt "$(pv nginx_rps_nw_rps)") req/s | $(awk -v a="$(pv rerankd_rps_nw_rps)" -v b="$(pv nginx_rps_nw_rps)" 'BEGIN { if (b > 0) printf "%.2f of nginx", a / b }') |"
        echo "| scaling: proxy req/s, 1 → $N workers | $(fmt "$(pv rerankd_rps_rps)") → $(fmt "$(pv rerankd_rps_nw_rps)") req/s | | | $(ratio "$(pv rerankd_rps_rps)" "$(pv rerankd_rps_nw_rps)") |"
        echo "| scaling: bm25 100 docs × 1 KB req/s, 1 → $N workers | $(fmt "$(pv bm25_1w_rps)") → $(fmt "$(pv bm25_nw_rps)") req/s | | | $(ratio "$(pv bm25_1w_rps)" "$(pv bm25_nw_rps)") |"
    fi
    echo "| RSS idle (just started: 1 worker / $N workers) | $(mb "$(pv rss_idle_1w_kb)") / $(mb "$(pv rss_idle_nw_kb)") | | | |"
    echo "| RSS under load (peak during the 1-worker proxy run / after it) | $(mb "$(pv rss_load_1w_kb)") / $(mb "$(pv rss_after_1w_kb)") | | | |"
    echo "| where a proxied request's time goes (x-rerankd-timing, µs, warm) | $(pv timing_warm_5) | | | |"
    # the issue's goals
    # the goal on five alternated rounds (bench/proxy.sh): each round's rerankd p99 minus the
    # nginx p99 just before it; the median judged
    lat_rounds=$(for r in 1 2 3 4 5; do
        awk -v a="$(pv "rerankd_lat_r${r}_p99")" -v b="$(pv "nginx_lat_r${r}_p99")" \
            'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%d\n", a - b }'
    done)
    dp99_med=$(echo "$lat_rounds" | median)
    if [ -n "$dp99_med" ]; then
        echo "| **goal**: added p99 ≤ 500 µs (proxy, 1 connection), in 5 rounds (nginx then rerankd, alternated; the median judged) | $(echo "$lat_rounds" | awk 'NF { printf "%+d ", $1 }')µs | | median $(printf '%+d' "$dp99_med") µs | $(verdict "$dp99_med" "<=" 500) |"
    else
        echo "| **goal**: added p99 ≤ 500 µs (proxy, 1 connection) | +$(fmt "$dp99") µs | | | $(verdict "$dp99" "<=" 500) |"
    fi
    echo "| **goal**: ≥ 50 % of nginx throughput (1 worker each, wrk -t2 -c32) | $(awk -v s="$share1" 'BEGIN { printf "%.0f %%", s * 100 }') | | | $(verdict "$share1" ">=" 0.5) |"
    echo "| **goal**: idle RSS ≤ 20 MB (1 worker) | $(mb "$(pv rss_idle_1w_kb)") | | | $(verdict "$(pv rss_idle_1w_kb)" "<=" 20480) |"
    # side by side (issue 13): the same run, 1 worker each, wrk -t1 -c32, the same body and mock
    sbs() { # KEY -> "R req/s (p99 P µs, non-2xx N)"
        if [ -z "$(pv "${1}_rps")" ]; then echo "n/a"; return; fi
        echo "$(fmt "$(pv "${1}_rps")") req/s (p99 $(fmt "$(pv "${1}_p99")") µs, non-2xx $(pv "${1}_non2xx"))"
    }
    x() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b }'; }
    sbs_ng=$(x "$(pv sbs_rerankd_rps)" "$(pv sbs_nginx_rps)")
    sbs_peer=$(x "$(pv sbs_rerankd_rps)" "$(pv sbs_peer_rps)")
    sbs_set="1 worker each, wrk -t1 -c32 -d${SECS}s, $kb KB body; CPUs: $(pv sbs_pinned)"
    echo "| side by side: rerankd vs nginx \`proxy_pass\` ($sbs_set) | $(sbs sbs_rerankd) | nginx \`proxy_pass\` (keepalive upstream) → same mock | $(sbs sbs_nginx) | ${sbs_ng:-n/a}× of nginx |"
    echo "| side by side: rerankd vs nginx + Lua peer ($sbs_set) | $(sbs sbs_rerankd) | nginx + Lua peer (bench/peer/rerank_peer.lua: cjson, ngx.location.capture, table.sort) | $(sbs sbs_peer) | ${sbs_peer:-n/a}× of the peer |"
    ng_verdict=$(awk -v r="$sbs_ng" 'BEGIN { if (r == "") print "n/a"; else if (r >= 0.5) print "**met**";
        else if (r >= 0.3) print "**missed**"; else print "**missed** (< 0.3: not done)" }')
    echo "| **goal**: ≥ 0.5× nginx proxy_pass (wrk -t1 -c32, 1 worker each) | ${sbs_ng:-n/a}× | | | $ng_verdict |"
    echo "| **goal**: ≥ 5× nginx+Lua peer | ${sbs_peer:-n/a}× | | | $(verdict "$sbs_peer" ">=" 5) |"
    if [ -n "$(pv perf_dso)" ]; then
        echo "| profile: rerankd, 1 worker, under load: CPU by DSO (BENCH_PERF=1, perf) | $(pv perf_dso) | | | |"
    fi
else
    echo "| proxy rows | n/a (nginx or wrk missing, see messages above) | | | |"
fi
fts_x=$(awk -v a="$(kv bm25_100_p50_us)" -v b="$(kv fts5_100_total_p50_us)" 'BEGIN { if (a > 0 && b > 0) printf "%.1f", b / a }')
fts_x1k=$(awk -v a="$(kv bm25_1000_p50_us)" -v b="$(kv fts5_1000_total_p50_us)" 'BEGIN { if (a > 0 && b > 0) printf "%.1f", b / a }')
topk_x=$(awk -v a="$(kv topk_1m_k100_us)" -v b="$(kv qsort_1m_us)" 'BEGIN { if (a > 0 && b > 0) printf "%.1f", b / a }')
echo "| **goal**: BM25 faster than FTS5 (100 / 1,000 docs) | ${fts_x:-n/a}× / ${fts_x1k:-n/a}× | | | $(verdict "$(awk -v a="${fts_x:-0}" -v b="${fts_x1k:-0}" 'BEGIN { print (a < b ? a : b) }')" ">=" 1.0001) |"
echo "| **goal**: top-k ≥ 5× qsort (k=100 of 1,000,000) | ${topk_x:-n/a}× | | | $(verdict "${topk_x:-}" ">=" 5) |"
# BM25 over HTTP (1 connection, rows above) against SQLite FTS5 in-process, same docs, same run
h1k=""; h100=""
if [ "$HTTP" = 1 ]; then h1k=$(field "$L1000" p50); h100=$(field "$L100" p50); fi
f1k=$(kv fts5_1000_total_p50_us)
h1k_x=$(awk -v a="$h1k" -v b="$f1k" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3f", a / b }')
# rounds (above): "FTS5:HTTP:FTS5porter:HTTPen" per round -> each round's ratio for the pair
# of fields given, then their median
round_ratios() { for x in $ROUNDS; do echo "$x" | awk -F: -v h="$1" -v f="$2" '{ if ($h + 0 > 0 && $f + 0 > 0) printf "%.3f\n", $h / $f }'; done; }
round_median() { round_ratios "$1" "$2" | median; }
round_row() { # LABEL HTTP_FIELD FTS_FIELD
    med=$(round_median "$2" "$3")
    [ -n "$med" ] || return 0
    echo "| **goal**: $1, in 5 rounds (FTS5 then HTTP, alternated; the median judged) | $(round_ratios "$2" "$3" | tr '\n' ' ')| | median $med | $(verdict "$med" "<=" 0.1) |"
}
if [ -z "$ROUNDS" ]; then
echo "| **goal**: BM25 HTTP 1000 docs p50 ≤ 1/10 of FTS5 build+rank p50 | $(fmt "$h1k") µs vs FTS5 $(fmt "$f1k") µs (${h1k_x:-n/a} of it) | | | $(verdict "$h1k_x" "<=" 0.1) |"
else
echo "| BM25 HTTP 1000 docs p50 against FTS5 build+rank p50, the rows above | $(fmt "$h1k") µs vs FTS5 $(fmt "$f1k") µs (${h1k_x:-n/a} of it) | | | |"
round_row "BM25 HTTP 1000 docs p50 ≤ 1/10 of FTS5 build+rank p50" 2 1
fi
# the floor under it: nginx reading a POST of the same size (100 × 1 KB) and answering at once
floor100=""; [ "$PROXY" = 1 ] && floor100=$(pv direct_p50)
echo "| **goal**: BM25 HTTP 100 docs p50 ≤ 200 µs | $(fmt "$h100") µs | nginx \`return 200\` to a POST of the same size (it reads the body and discards it; the mock alone, proxy rows), p50 | $(fmt "$floor100") µs | $(verdict "$h100" "<=" 200) |"
# issue 19: stemmed BM25 over HTTP against FTS5 with its porter stemmer, same docs, same run
e1k=""; [ "$HTTP" = 1 ] && e1k=$(field "$L1000EN" p50)
p1k=$(kv fts5porter_1000_total_p50_us)
e1k_x=$(awk -v a="$e1k" -v b="$p1k" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3f", a / b }')
if [ -z "$ROUNDS" ]; then
echo "| **goal**: BM25 \`language: english\` HTTP 1000 docs p50 ≤ 1/10 of FTS5 \`porter\` build+rank p50 | $(fmt "$e1k") µs vs FTS5 porter $(fmt "$p1k") µs (${e1k_x:-n/a} of it) | | | $(verdict "$e1k_x" "<=" 0.1) |"
else
echo "| BM25 \`language: english\` HTTP 1000 docs p50 against FTS5 \`porter\` build+rank p50, the rows above | $(fmt "$e1k") µs vs FTS5 porter $(fmt "$p1k") µs (${e1k_x:-n/a} of it) | | | |"
round_row "BM25 \`language: english\` HTTP 1000 docs p50 ≤ 1/10 of FTS5 \`porter\` build+rank p50" 4 3
fi
# instructions per request (callgrind; sequential keep-alive requests, start-up cancelled out)
if [ "${BENCH_ICOUNT:-0}" = 1 ] && [ "$HTTP" = 1 ] && command -v valgrind >/dev/null; then
    echo "bench: instruction counts (callgrind)..." >&2
    ic() { # LABEL ENV... -> a table row
        label=$1; shift
        n=$(env "$@" sh bench/icount.sh "$B/proxy" 2>/dev/null | sed -n 's/^instructions per request: \([0-9]*\).*/\1/p')
        echo "| instructions per request (callgrind, bench/icount.sh): $label | $(fmt "${n:-}") | | | |"
    }
    [ "$PROXY" = 1 ] && ic "proxy, 100 docs × 1 KB" ICOUNT_N1=50 ICOUNT_N2=250
    # the bm25 rows send the ten bodies in turn, as the latency rows do (distinct clients)
    ic "bm25, 100 docs" ICOUNT_BODY="$(echo "$B"/body_100_*.json)" ICOUNT_N1=20 ICOUNT_N2=120
    ic "bm25, 1000 docs" ICOUNT_BODY="$(echo "$B"/body_1000_*.json)" ICOUNT_N1=10 ICOUNT_N2=30
    ic "bm25 \`language: english\`, 1000 docs" ICOUNT_BODY="$(echo "$B"/body_en_1000_*.json)" ICOUNT_N1=10 ICOUNT_N2=30
fi
echo
q=$(awk '$1 == "query" { sub(/^query /, ""); print }' "$B/kernels.txt")
echo "Query \"$q\"; documents: Zipf(1.0) over a 20,000-word vocabulary from a seeded PRNG (bench/bench_kernels.c); in-process rows cycle through disjoint sets of all 10,000 docs, HTTP rows through 10 request bodies (docs 1-1,000 or 1-10,000)."
[ "$PROXY" = 1 ] && echo "Proxy, RSS and scaling rows: bench/proxy.sh (100 random-word documents of 1,024 B, top_n 10; the mock is an nginx worker answering a fixed 100-result Cohere v2 body). wrk has no constant-rate mode, so latency rows use one connection (one request at a time) and throughput rows saturate; wrk, the proxies and the mock share the $(nproc) cores. Side-by-side rows: nginx \`proxy_pass\`, the nginx + Lua peer and rerankd one after the other in this run, 1 worker each, wrk -t1 -c32; the peer's answer is checked against rerankd's before it is measured; with BENCH_PIN=1 and 2+ CPUs the proxy under test runs alone on the last CPU (taskset), wrk and the mock on the others (default: unpinned)."
