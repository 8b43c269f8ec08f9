#!/usr/bin/env bash
# The test command (README): installs what it needs, then
#   1. builds with AddressSanitizer + UndefinedBehaviorSanitizer (warnings are errors) and
#      runs the whole suite (unit, integration with the 'heavy' tests, fuzz-regress), the
#      formatting gate (lint: clang-format --dry-run -Werror over the tree) and the job
#      report in headless chromium (browser),
#   2. builds a release build (NDEBUG) and runs the unit suite there too, so no test leans
#      on assert(), and the 100 MB transfer test whose memory bound needs a build without
#      sanitizers,
#   3. builds with ThreadSanitizer and runs the unit and integration suites (not 'heavy'),
#   4. runs every suite under valgrind (leaks are errors): unit and fuzz-regress through
#      meson's valgrind setup, integration with valgrind wrapping each fedvault process
#      (except the 'heavy' tests: long federations, coordinator crashes, distillation and
#      the ONNX Runtime comparison, tens of minutes of training there; the federation's
#      code paths still run under valgrind in fed-exact, agent-cli, agent-audit and
#      admin-cli, the models' in test_onnx, test_explain and predict-cli),
# and ends with one line "N passed, N failed" counted from meson's test logs.
# Exit status is non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ "$(id -u)" = 0 ]; then .ci/install-deps || exit 1; fi

# ONNX Runtime (npm: onnxruntime-node, pinned in tests/onnx) for the ONNX export test:
# downloaded once into build-onnx-node/ and shared by every build below.
export FV_NODE_DIR="$root/build-onnx-node"

status=0
logs=()
run_suite() { # builddir, meson test args...
  local dir=$1; shift
  local stamp="$root/$dir/meson-logs/.run-stamp"
  mkdir -p "$root/$dir/meson-logs" && touch "$stamp"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" || status=1
  local copy="$root/$dir/meson-logs/testlog-run$((${#logs[@]} + 1)).json"
  # meson writes testlog.json, or testlog-<setup>.json under --setup: take the newest.
  local log
  log=$(ls -t "$root/$dir"/meson-logs/testlog*.json 2>/dev/null | grep -v '/testlog-run' | head -1)
  if [ -z "$log" ] || [ ! "$log" -nt "$stamp" ]; then
    echo "no fresh test log in $dir for: $*"; status=1; return
  fi
  cp "$log" "$copy" || { status=1; return; }
  logs+=("$copy")
}
configure() { # builddir, meson options...
  local dir=$1; shift
  if [ -d "$dir" ]; then meson setup --reconfigure "$dir" "$@" >/dev/null
  else meson setup "$dir" "$@" >/dev/null; fi || { echo "meson setup $dir failed"; exit 1; }
  ninja -C "$dir" || { echo "build $dir failed"; exit 1; }
}

# Warnings are errors here: a new warning fails the run.
configure build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
  -Dwerror=true
run_suite build-asan --suite unit --suite integration --suite fuzz-regress
# The formatting gate, once: clang-format --dry-run -Werror over every tracked .c/.h.
run_suite build-asan --suite lint
# The job report in Debian's chromium, headless (suite 'browser': one federation with
# distillation, the page loaded with no console error, every chart checked against the
# job's records; about a minute). Chromium is installed here, not in install-deps: about
# 300 MB that no other step needs.
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } ||
    { echo "installing chromium failed"; status=1; }
fi
run_suite build-asan --suite browser

configure build-release -Dbuildtype=release -Db_ndebug=true
run_suite build-release --suite unit
# Peak memory is only meaningful without sanitizers: the 100 MB transfer asserts its RSS
# bound here (under ASan it only prints it).
run_suite build-release integration/net-bigvec
# Dropouts are injected at protocol points, not times: the same test holds in a build as
# fast as this one (issue 14: a timing window that a release build outran).
run_suite build-release integration/fed-dropout

# ThreadSanitizer: both daemons hand work to the libuv thread pool. OpenBLAS runs one
# thread by default here; tests that ask it for more (test_gemm, test_mlp) meet its own
# worker pool, whose spin-and-barrier handoff TSan cannot see: tests/tsan.supp (reviewed).
configure build-tsan -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized
OPENBLAS_NUM_THREADS=1 \
  TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$root/tests/tsan.supp" \
  run_suite build-tsan --suite unit --suite integration --no-suite heavy

run_suite build-release --suite unit --suite fuzz-regress --no-suite heavy --setup valgrind
# The integration scripts are Python; valgrind wraps each fedvault process they start.
# Exit code 99 marks a valgrind error, so it cannot pass for an expected exit 1.
FV_TEST_WRAPPER="valgrind --quiet --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite,indirect,possible --show-leak-kinds=definite,indirect,possible" \
  run_suite build-release --suite integration --no-suite heavy --no-suite novalgrind \
  --num-processes 1

/usr/bin/python3 - "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line).get("result")
            if r in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif r == "SKIP":
                skipped += 1
            else:
                failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
exit $status
