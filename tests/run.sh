#!/usr/bin/env bash
# The whole test suite on a fresh machine: Debian packages, Release build, ctest.
#   bash tests/run.sh            everything
#   FM_ASAN=1 bash tests/run.sh  the same under AddressSanitizer + UBSan (build-asan/)
#   FM_WERROR=1                  warnings are errors (CI); FM_REQUIRE_ALL=1: no test may skip (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/install-deps.sh --test
build=build
flags=(-DCMAKE_BUILD_TYPE=Release)
if [ "${FM_ASAN:-0}" = 1 ]; then build=build-asan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFM_ASAN=ON); fi
flags+=(-DFM_WERROR="$([ "${FM_WERROR:-0}" = 1 ] && echo ON || echo OFF)")
cmake -S . -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure "$@"
