#!/bin/sh
# Regenerates the output shown in README.md ("Evaluate rerankers"): rerankd eval on the
# shipped set, with the keyless models and the fusion pipelines of examples/eval/config.yaml.
# Run from the source tree after `make`.
set -e
cd "$(dirname "$0")/../.."
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/?.so;;"
out=${TMPDIR:-/tmp}/rerankd-eval-hybrid.$$.jsonl
trap 'rm -f "$out"' EXIT
echo '$ rerankd eval -c examples/eval/config.yaml --data examples/eval/beir --candidates all --models bm25,bm25-short'
./rerankd eval -c examples/eval/config.yaml --data examples/eval/beir --candidates all --models bm25,bm25-short
echo
echo '$ luajit examples/eval/lists.lua examples/eval/beir > hybrid.jsonl'
luajit examples/eval/lists.lua examples/eval/beir > "$out"
echo '$ rerankd eval -c examples/eval/config.yaml --data hybrid.jsonl --models bm25,hybrid,hybrid-bm25'
./rerankd eval -c examples/eval/config.yaml --data "$out" --models bm25,hybrid,hybrid-bm25 | sed "s|$out|hybrid.jsonl|"
