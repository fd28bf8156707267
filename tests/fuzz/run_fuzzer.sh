#!/usr/bin/env bash
# One bounded fuzz run, as ctest's fuzz.<name> runs it:
#   run_fuzzer.sh FUZZER SOURCE_DIR WORK_DIR NAME SECONDS
# 1. every input under regressions/<name>/ once (-runs=0): a crash found
#    before stays fixed;
# 2. SECONDS of fuzzing over WORK_DIR/corpus, a copy of corpus/<name>/ that
#    keeps what earlier runs in this build dir found. A crash leaves its
#    input in WORK_DIR (crash-*, leak-*, timeout-*) and fails the test.
set -euo pipefail
fuzzer=$1 src=$2 work=$3 name=$4 seconds=$5
export LSAN_OPTIONS="suppressions=$src/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
mkdir -p "$work/corpus"
cp -n "$src/corpus/$name"/* "$work/corpus/" 2>/dev/null || true
opts=(-rss_limit_mb=2048 -timeout=10 -artifact_prefix="$work/" -print_final_stats=1)
if [ -d "$src/regressions/$name" ] && [ -n "$(ls -A "$src/regressions/$name")" ]; then
  "$fuzzer" "${opts[@]}" "$src/regressions/$name"/*
fi
"$fuzzer" "${opts[@]}" -max_total_time="$seconds" "$work/corpus"
