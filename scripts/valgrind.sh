#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The functional integration tests with every cofferd they start running
# under valgrind memcheck (COFFER_TEST_WRAPPER, read by the test harness).
# Passes when the tests pass and every memcheck log (one per process:
# supervisor, workers, background process) reports no error and nothing
# definitely lost. Tests that measure time or kill processes on purpose are
# left out: memcheck slows everything twenty times.
#
#   scripts/valgrind.sh [BUILD_DIR]     (default build; `make valgrind`)
set -euo pipefail

cd "$(dirname "$0")/.."
build=${1:-build}
logs=$(mktemp -d /tmp/coffer-valgrind.XXXXXX)
chmod 755 "$logs"
tests='^(api_http|api_reasons|api_use|api_oauth2|requests|tokens|cli_api|cli_exec|cli_mcp)_test$'

export COFFER_TEST_WRAPPER="/usr/bin/valgrind --tool=memcheck --leak-check=full \
--errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 \
--log-file=$logs/memcheck.%p"
status=0
ctest --test-dir "$build" -R "$tests|testenv" --output-on-failure -j2 || status=$?

n=0
bad=0
killed=0
for f in "$logs"/memcheck.*; do
  [[ -e "$f" ]] || continue
  n=$((n + 1))
  # A process killed on purpose (SIGKILL in a test) never writes its summary.
  if ! grep -q 'ERROR SUMMARY' "$f"; then
    killed=$((killed + 1))
    continue
  fi
  if ! grep -q 'ERROR SUMMARY: 0 errors' "$f"; then
    echo "valgrind: errors in $f:"
    grep -E 'Invalid|uninitialised|definitely lost|ERROR SUMMARY' "$f" | head -20
    bad=$((bad + 1))
  fi
done
echo "valgrind: $n memcheck logs in $logs: $bad with errors, $killed of processes killed before their summary"
if [[ $n -eq 0 ]]; then
  echo "valgrind: no cofferd ran under memcheck" >&2
  exit 1
fi
if [[ $status -ne 0 || $bad -ne 0 ]]; then
  exit 1
fi
rm -rf "$logs"
