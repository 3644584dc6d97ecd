#!/bin/sh
# make fuzz: build one libFuzzer binary per target and run each for FUZZ_SECONDS
# (default 600), two at a time. Crashes land in tests/fuzz/crashes/<target>/.
set -e
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-600}
TARGETS=${FUZZ_TARGETS:-"request config provider fusion http json answer bm25"}
B=build/fuzz
FLAGS="-std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -DRERANKD_VERSION=\"fuzz\" $(pkg-config --cflags luajit yaml-0.1 libcurl) -Icore"
mkdir -p $B tests/fuzz/crashes
SRC="core/body.c core/topk.c core/tokenize.c core/analyzer.c core/bm25.c core/bm25_par.c core/bm25_prf.c core/lbm25.c core/json.c core/json_answer.c core/json_splice.c core/yaml.c core/yaml_scalar.c core/lcore.c core/log.c"
for t in $TARGETS; do
  if [ "$t" = http ]; then # the HTTP request framing in C (no Lua): core/http_parse.c
    clang $FLAGS -o $B/fuzz_http tests/fuzz/fuzz_http.c core/http_parse.c -lhttp_parser
    continue
  fi
  clang $FLAGS -DFUZZ_TARGET="\"$t\"" -o $B/fuzz_$t tests/fuzz/fuzz_lua.c $SRC \
    $(pkg-config --libs luajit yaml-0.1) -lstemmer -lm
done
export RERANKD_HOME=$PWD
run() {
  t=$1
  mkdir -p tests/fuzz/crashes/$t tests/fuzz/corpus/$t $B/corpus/$t
  ASAN_OPTIONS=detect_leaks=0 $B/fuzz_$t -max_total_time=$SECONDS_EACH -max_len=65536 -timeout=10 \
    -artifact_prefix=tests/fuzz/crashes/$t/ -print_final_stats=1 $B/corpus/$t tests/fuzz/corpus/$t \
    > $B/$t.log 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' $B/$t.log | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' $B/$t.log | tail -1 | grep -o '[0-9]*')
  ft=$(grep -o 'ft: [0-9]*' $B/$t.log | tail -1 | grep -o '[0-9]*')
  crashes=$(ls tests/fuzz/crashes/$t | wc -l)
  echo "| $t | ${SECONDS_EACH}s | ${execs:-?} | ${cov:-?} | ${ft:-?} | $crashes |"
}
echo "| target | time | execs | C edges | features (C edges + Lua lines) | crash files |"
echo "|---|---|---|---|---|---|"
set -- $TARGETS
while [ $# -gt 0 ]; do
  a=$1; shift; b=${1:-}; [ -n "$b" ] && shift
  if [ -n "$b" ]; then run "$a" > $B/$a.row & run "$b" > $B/$b.row; wait; cat $B/$a.row $B/$b.row
  else run "$a"; fi
done
