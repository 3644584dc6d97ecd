#!/bin/sh
# LLM rerankers: wall time of one /v1/rerank request with 100 documents through the real
# daemon against the mock OpenAI chat server (tests/mock/mock_openai.py) answering each call
# after 50 ms. Baseline measured in the same run: one direct call to the mock (L); the ideal
# for a mode is its sequential waves × L (pointwise: ceil(n / concurrency) waves; LanceDB
# batches: ceil(batches / concurrency); listwise: one wave per window).
#   sh bench/bench_llm.sh          a Markdown table (header + rows)
#   sh bench/bench_llm.sh --rows   the rows only, in bench/run.sh's 5-column table
#   BENCH_LLM_RUNS=3 (median of), BENCH_LLM_LATENCY_MS=50, BENCH_LLM_DOCS=100
set -eu
cd "$(dirname "$0")/.."
B=build/bench
mkdir -p "$B"
RUNS=${BENCH_LLM_RUNS:-3}
LAT=${BENCH_LLM_LATENCY_MS:-50}
N=${BENCH_LLM_DOCS:-100}
ROWS_ONLY=0
[ "${1:-}" = "--rows" ] && ROWS_ONLY=1

MOCK_PID="" RD_PID=""
cleanup() {
    for p in $RD_PID $MOCK_PID; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    RD_PID="" MOCK_PID=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

row_na() { echo "| LLM rerankers | n/a ($1) | | | |"; exit 0; }
command -v python3 >/dev/null || row_na "python3 not installed"
[ -x ./rerankd ] || make -s rerankd >&2 || row_na "./rerankd does not build"

python3 tests/mock/mock_openai.py --port 0 > "$B/mock_openai.log" 2>&1 &
MOCK_PID=$!
MPORT=""
i=0
while [ $i -lt 100 ]; do
    MPORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$B/mock_openai.log")
    [ -n "$MPORT" ] && break
    sleep 0.05
    i=$((i + 1))
done
[ -n "$MPORT" ] || row_na "mock did not start"
MURL="http://127.0.0.1:$MPORT"
M="slow:$LAT"

cat > "$B/llm.yaml" <<EOF
server: { auth: none, listen: "127.0.0.1:0", workers: 1, timeout: 120s }
models:
  - { name: pw1, provider: openai_llm, mode: pointwise, model: "$M", base_url: "$MURL", concurrency: 1 }
  - { name: pw8, provider: openai_llm, mode: pointwise, model: "$M", base_url: "$MURL", concurrency: 8 }
  - { name: pw32, provider: openai_llm, mode: pointwise, model: "$M", base_url: "$MURL", concurrency: 32 }
  - { name: yn8, provider: openai_llm, template: yes_no, model: "$M", base_url: "$MURL", concurrency: 8 }
  - { name: ldb1, provider: openai_llm, model: "$M", base_url: "$MURL", batch_size: $N }
  - { name: ldb20, provider: openai_llm, model: "$M", base_url: "$MURL", batch_size: 20, concurrency: 8 }
  - { name: ldb10c2, provider: openai_llm, model: "$M", base_url: "$MURL", batch_size: 10, concurrency: 2 }
  - { name: lw, provider: openai_listwise, model: "$M", base_url: "$MURL", window: 20, step: 10, candidates: $N }
EOF
./rerankd -c "$B/llm.yaml" -p 0 -w 1 > "$B/rerankd_llm.log" 2>&1 &
RD_PID=$!
RPORT=""
i=0
while [ $i -lt 100 ]; do
    RPORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\) with.*/\1/p' "$B/rerankd_llm.log" | head -1)
    [ -n "$RPORT" ] && break
    kill -0 "$RD_PID" 2>/dev/null || break
    sleep 0.05
    i=$((i + 1))
done
[ -n "$RPORT" ] || row_na "rerankd did not start (see $B/rerankd_llm.log)"
RURL="http://127.0.0.1:$RPORT"

# the request: N documents of ~40 words with varying overlap with the query
python3 - "$N" > "$B/llm_body.json" <<'EOF'
import json, random, sys
n = int(sys.argv[1])
rnd = random.Random(7)
vocab = ["alpha", "beta", "gamma", "delta", "apple", "pie", "red", "green", "river", "stone", "cloud", "music"]
docs = [" ".join(rnd.choice(vocab) for _ in range(40)) + " doc%d" % i for i in range(n)]
print(json.dumps({"model": "MODEL", "query": "red apple pie recipe", "documents": docs, "top_n": 10}))
EOF
# one direct call to the mock (the per-call baseline L)
printf '{"model":"%s","messages":[{"role":"user","content":"Query: a\\n\\nDocument: a"}]}' "$M" > "$B/llm_direct.json"

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else print a[int((NR + 1) / 2)] }'; }
timed() { # url body -> ms, median of RUNS
    k=0
    while [ $k -lt "$RUNS" ]; do
        curl -s -o "$B/llm_out.json" -w '%{time_total}\n' -H 'Content-Type: application/json' --data-binary "@$2" "$1" \
            | awk '{ printf "%.1f\n", $1 * 1000 }'
        k=$((k + 1))
    done | median
}
L=$(timed "$MURL/v1/chat/completions" "$B/llm_direct.json")

run_model() { # name -> ms; checks the answer is a 200 list
    sed "s/\"MODEL\"/\"$1\"/" "$B/llm_body.json" > "$B/llm_body_$1.json"
    ms=$(timed "$RURL/v1/rerank" "$B/llm_body_$1.json")
    if ! grep -q '"results":\[{' "$B/llm_out.json"; then
        echo "bench_llm: $1 failed: $(head -c 300 "$B/llm_out.json")" >&2
        echo ""
        return
    fi
    echo "$ms"
}

fmt() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else printf "%.0f", v }'; }
row() { # label model waves calls
    ms=$(run_model "$2")
    ideal=$(awk -v w="$3" -v l="$L" 'BEGIN { printf "%.0f", w * l }')
    eff=$(awk -v a="$ms" -v b="$ideal" 'BEGIN { if (a == "" || a + 0 == 0) print "n/a"; else printf "%.2f× of ideal", a / b }')
    echo "| $1, $N docs, mock ${LAT} ms/call | $(fmt "$ms") ms ($4 calls) | $3 sequential waves × one direct mock call ($(fmt "$L") ms) | $ideal ms | $eff |"
}
ceil() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (a + b - 1) / b }'; }
# listwise windows over N candidates (window 20, step 10, start clamped)
WINDOWS=$(awk -v m="$N" 'BEGIN { w = 0; last = m; while (1) { w++; f = last - 19; if (f <= 1) break; last -= 10 } print w }')

if [ "$ROWS_ONLY" = 0 ]; then
    echo "rerankd LLM rerankers: $(date -u +%Y-%m-%dT%H:%MZ), nproc $(nproc), 1 worker, mock and rerankd on the same machine, median of $RUNS"
    echo
    echo "| benchmark | rerankd | baseline (same run) | baseline | ratio |"
    echo "|---|---|---|---|---|"
fi
row "LLM pointwise JSON score, concurrency 1" pw1 "$N" "$N"
row "LLM pointwise JSON score, concurrency 8" pw8 "$(ceil "$N" 8)" "$N"
row "LLM pointwise JSON score, concurrency 32" pw32 "$(ceil "$N" 32)" "$N"
row "LLM pointwise yes/no + logprobs, concurrency 8" yn8 "$(ceil "$N" 8)" "$N"
row "LLM LanceDB mode, one call (LanceDB's own behaviour)" ldb1 1 1
row "LLM LanceDB mode, batches of 20, concurrency 8" ldb20 "$(ceil "$(ceil "$N" 20)" 8)" "$(ceil "$N" 20)"
row "LLM LanceDB mode, batches of 10, concurrency 2" ldb10c2 "$(ceil "$(ceil "$N" 10)" 2)" "$(ceil "$N" 10)"
row "LLM listwise RankGPT, window 20 step 10 over $N candidates" lw "$WINDOWS" "$WINDOWS"
