#!/bin/sh
# Runs every suite and prints "N passed, M failed" last.
# SUITES="c lua e2e" selects; CTEST_BUILD points at the C test binaries.
cd "$(dirname "$0")/.." || exit 1
SUITES=${SUITES:-"c lua e2e"}
CTEST_BUILD=${CTEST_BUILD:-build}
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/tests/?.lua;;"
export LUA_CPATH="${CORE_CPATH:-$PWD/?.so};;"
mkdir -p tests/tmp
log=tests/tmp/results.$$.tap  # per run: concurrent runs must not share it
: > "$log"
# Under `make sanitize` core.so is ASan-instrumented: a plain luajit host needs the
# runtime preloaded; rerankd links it statically, so tests/support/daemon.lua starts the
# daemon without the preload.
asan_preload=""
if [ -n "$RERANKD_SANITIZE" ]; then
  asan=$(clang -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null)
  [ -f "$asan" ] && asan_preload="$asan"
fi
for s in $SUITES; do
  case $s in
    c)
      for t in "$CTEST_BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        echo "== $t"; "$t" 2>&1 | tee -a "$log" | grep -v '^ok ' ; done ;;
    lua)
      echo "== busted tests/lua"
      LD_PRELOAD="$asan_preload" busted --lua=luajit -o TAP tests/lua 2>&1 | tee -a "$log" | grep -v '^ok ' ;;
    e2e)
      echo "== busted tests/e2e"
      # e2e drives the (instrumented) daemon over HTTP; in-process library calls use the
      # normal module, so no ASan preload leaks into curl, node, nginx or python
      LUA_CPATH="$PWD/?.so;;" busted --lua=luajit -o TAP tests/e2e 2>&1 | tee -a "$log" | grep -v '^ok ' ;;
  esac
done
passed=$(grep -c '^ok ' "$log")
failed=$(grep -c '^not ok ' "$log")
# a suite that crashed without TAP output counts as a failure
grep -q '^# busted crashed\|^Error → \|^lua: \|^luajit: ' "$log" && failed=$((failed + 1))
mv -f "$log" tests/tmp/results.tap
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
