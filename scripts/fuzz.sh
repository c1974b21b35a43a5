#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds the libFuzzer targets of tests/fuzz (clang, ASan and UBSan) in their
# own build directory and runs them.
#
#   scripts/fuzz.sh check     each target FUZZ_CHECK_SECONDS (15) over a copy
#                             of its seed corpus, two at a time; fails on any
#                             crash, leak or timeout. Part of `make check`.
#   scripts/fuzz.sh campaign  each target FUZZ_SECONDS (600) with two jobs
#                             into a working corpus FUZZ_BUILD/corpus/<name>,
#                             seeded from tests/fuzz/corpus; prints runs,
#                             coverage, execs/s and any crash file per target.
#                             `make fuzz`.
#
# FUZZ_BUILD (default build-fuzz) is the build directory; FUZZ_TARGETS (a
# space-separated list, default every target) narrows a run. Nothing is
# ever written into tests/fuzz: new inputs go to a temporary copy (check) or
# to the working corpus (campaign). A crash found is reproduced with
# `FUZZ_BUILD/<name>_fuzz <crash file>`; once fixed, add the file to
# tests/fuzz/corpus/<name>/ as crash-<what it was>.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-check}
build=${FUZZ_BUILD:-build-fuzz}
[[ "$build" == /* ]] || build=$root/$build
jobs=2
all_targets=(policy_yaml config_yaml spiffe pkcs11_uri bearer_token stored_blob audit_export mcp
  broker_url usage_json json_bodies)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

# A leak is a finding; UBSan stops at the first report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp:print_suppressions=0}

build_targets() {
  cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCOFFER_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$jobs" --target "${targets[@]/%/_fuzz}"
}

# The dictionary option of target $1, if it has one.
dict_of() {
  if [[ -f tests/fuzz/$1.dict ]]; then
    printf '%s\n' "-dict=$root/tests/fuzz/$1.dict"
  fi
}

# Prints "name: runs N, cov C, execs/s E" from the final stats in log $2.
summary() {
  local runs cov eps
  runs=$(awk -F': *' '/^stat::number_of_executed_units/ { s += $NF } END { print s + 0 }' "$2")
  eps=$(awk -F': *' '/^stat::average_exec_per_sec/ { s += $NF } END { print s + 0 }' "$2")
  cov=$(awk '{ for (i = 1; i < NF; i++) if ($i == "cov:" && $(i + 1) > m) m = $(i + 1) }
             END { print m + 0 }' "$2")
  printf '%-13s runs %10s  cov %5s  execs/s %7s\n' "$1:" "$runs" "$cov" "$eps"
}

# Runs target $1 briefly over a copy of its seeds in $2; its log and exit status land in $2.
check_one() {
  local name=$1 work=$2 rc=0
  local -a dict
  mkdir -p "$work/corpus/$name" "$work/artifacts"
  cp -R "tests/fuzz/corpus/$name/." "$work/corpus/$name/"
  mapfile -t dict < <(dict_of "$name")
  "$build/${name}_fuzz" -max_total_time="${FUZZ_CHECK_SECONDS:-15}" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/$name-" \
    "${dict[@]}" "$work/corpus/$name" >"$work/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$name.rc"
}

check() {
  local work failed=0 running=0
  work=$(mktemp -d "${TMPDIR:-/tmp}/coffer-fuzz.XXXXXX")
  for name in "${targets[@]}"; do
    check_one "$name" "$work" &
    running=$((running + 1))
    if ((running >= jobs)); then
      wait -n || true
      running=$((running - 1))
    fi
  done
  wait
  for name in "${targets[@]}"; do
    if [[ "$(cat "$work/$name.rc")" != 0 ]]; then
      echo "fuzz: $name FAILED (exit $(cat "$work/$name.rc")); its log:" >&2
      grep -vE '^#[0-9]+' "$work/$name.log" | tail -n 60 >&2
      ls "$work/artifacts/$name-"* 2>/dev/null | sed 's/^/fuzz: crash file: /' >&2 || true
      failed=1
    else
      summary "$name" "$work/$name.log"
    fi
  done
  if ((failed)); then
    echo "fuzz: failures found; inputs kept in $work/artifacts" >&2
    exit 1
  fi
  rm -rf "$work"
}

campaign() {
  local seconds=${FUZZ_SECONDS:-600} failed=0 name logs crashes
  local -a dict
  for name in "${targets[@]}"; do
    logs="$build/logs/$name"
    crashes="$build/crashes/$name"
    rm -rf "$logs"
    mkdir -p "$build/corpus/$name" "$logs" "$crashes"
    cp -R "tests/fuzz/corpus/$name/." "$build/corpus/$name/"
    mapfile -t dict < <(dict_of "$name")
    echo "fuzz: $name for ${seconds}s with $jobs jobs (logs in $logs)"
    (cd "$logs" && "$build/${name}_fuzz" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -jobs="$jobs" -workers="$jobs" \
      -artifact_prefix="$crashes/" "${dict[@]}" "$build/corpus/$name" \
      >/dev/null 2>&1) || true
    cat "$logs"/fuzz-*.log >"$logs/all.log" 2>/dev/null || true
    summary "$name" "$logs/all.log"
    if compgen -G "$crashes/*" >/dev/null; then
      ls "$crashes"/* | sed 's/^/  crash file: /'
      failed=1
    fi
  done
  if ((failed)); then
    echo "fuzz: crashes found (reproduce: $build/<name>_fuzz <crash file>)" >&2
    exit 1
  fi
}

case "$mode" in
  check)
    build_targets
    check
    ;;
  campaign)
    build_targets
    campaign
    ;;
  *)
    echo "usage: scripts/fuzz.sh check|campaign" >&2
    exit 2
    ;;
esac
