#!/bin/sh
# Hybrid search in 5 minutes: starts rerankd with examples/hybrid/config.yaml on a free port,
# sends request.json (a vector list + a keyword list) to the pipeline, prints the answer, stops.
#   sh examples/hybrid/run.sh                 # fuse, then rerank with the embedded BM25
#   LLM_BASE_URL=http://127.0.0.1:8000 LLM_MODEL=qwen2.5-1.5b-instruct \
#     sh examples/hybrid/run.sh hybrid-llm    # fuse, then rerank with your LLM server
# RERANKD: the binary (default: ./rerankd of this checkout, else rerankd on PATH).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pipeline=${1:-hybrid}
bin=${RERANKD:-}
if [ -z "$bin" ]; then
  if [ -x "$root/rerankd" ]; then bin="$root/rerankd"; else bin=rerankd; fi
fi
log=$(mktemp)
"$bin" -c "$here/config.yaml" -p 0 -w 1 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT INT TERM
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\) with.*/\1/p' "$log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "rerankd did not start" >&2; cat "$log" >&2; exit 1; }
# the request names the pipeline; the lists are what your two indexes returned
body=$(sed "s/^{/{\"pipeline\": \"$pipeline\",/" "$here/request.json")
curl -sS "http://127.0.0.1:$port/v1/rerank" -H 'Content-Type: application/json' -d "$body"
echo
