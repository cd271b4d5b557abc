#!/usr/bin/env bash
# test.sh — build spbmalloc (Release, warnings as errors) and run the test
# suite without the slow tests. Exits with ctest's status. .ci/run runs this.
#   SPB_BUILD_DIR  build directory (default: build)
#   SPB_CTEST_ARGS extra ctest arguments (e.g. "-L unit" or "-j2")
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=tools/lib-deps.sh
. tools/lib-deps.sh

build=${SPB_BUILD_DIR:-build}
spb_deps_ensure "${SPB_BUILD_PKGS[@]}"
# Not fatal: a test whose program is missing is skipped with its reason
# (python3, which the stats tests need, is a build package: configure
# stops without it).
spb_deps_ensure "${SPB_TEST_PKGS[@]}" || echo "spbmalloc: tests that need them will be skipped" >&2

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSPB_WERROR=ON
cmake --build "$build" -j "$(spb_nproc)"

status=0
# shellcheck disable=SC2086 # SPB_CTEST_ARGS is a list of arguments
# In parallel, one test per core (tests that must run alone say RUN_SERIAL).
ctest --test-dir "$build" --output-on-failure --no-tests=error -LE slow \
	-j "$(spb_nproc)" ${SPB_CTEST_ARGS:-} || status=$?
exit "$status"
