#!/usr/bin/env bash
# The README's test command: set-up, lint, then the test suite. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh

echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "[test] pytest"
# Real-archive tests fail (instead of skipping) when ../shared/data is missing.
export MEXJAX_REQUIRE_DATA=${MEXJAX_REQUIRE_DATA:-1}
workers=${MEXJAX_TEST_WORKERS:-2}

# pytest's exit code, with 5 (nothing collected) an error while tests/ has test files
run_pytest() {
  set +e
  .venv/bin/python -m pytest "$@"
  local rc=$?
  set -e
  if [ "$rc" = 5 ] && [ -n "$(find tests -name 'test_*.py' -print -quit 2>/dev/null)" ]; then
    echo "[test] pytest collected no tests although tests/ has test files: failing." >&2
    return 1
  fi
  [ "$rc" = 5 ] && return 0
  return "$rc"
}

if [ "$#" -gt 0 ]; then
  # Extra arguments: one plain run with them (e.g. `-m slow`: the last -m wins).
  run_pytest -m "not slow" --durations=15 "$@"
  exit $?
fi
# Tests marked slow are covered by a committed experiment run and stay out of the default run.
# Everything else runs on $workers processes with one CPU device each, except the sharding tests (then,
# on 4 fake devices) and the tests that assert on measured time: they run alone afterwards, so that the
# suite's own load does not enter their clocks.
# XLA compilation caches of the test processes (tests/conftest.py: one folder per process), kept in the
# git-ignored .pytest_cache between runs: the tests compile the same tiny programs again and again (a warm
# cache made a run of the attack tests 3x faster); entries are keyed by program, JAX version and flags,
# and an unreadable one is compiled again. MEXJAX_TEST_XLA_CACHE=/elsewhere moves them.
export MEXJAX_TEST_XLA_CACHE=${MEXJAX_TEST_XLA_CACHE:-$root/.pytest_cache/mexjax-xla}
mkdir -p "$MEXJAX_TEST_XLA_CACHE"
rc=0
run_pytest -m "not slow and not wallclock and not multidevice" -n "$workers" --durations=15 || rc=$?
echo "[test] pytest: the sharding tests, on 4 fake CPU devices"
MEXJAX_TEST_DEVICES=4 run_pytest -m "multidevice and not slow and not wallclock" --durations=3 || rc=$?
echo "[test] pytest: the wall-clock tests, alone"
set +e
.venv/bin/python -m pytest -m "wallclock and not slow" --durations=5
wall=$?
set -e
[ "$wall" = 0 ] || [ "$wall" = 5 ] || rc=$wall  # 5: no wall-clock test left, nothing to run
exit "$rc"
