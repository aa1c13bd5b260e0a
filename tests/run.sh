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

# The numerics once more under each narrower build of the kernels this CPU runs (FM_ISA,
# include/fm/isa.h): an AVX-512 machine tests the AVX2 kernels (with OpenBLAS's Haswell kernels,
# as on AMD's Zen, unless OPENBLAS_CORETYPE is set already) and the SSE2 ones; an AVX2 machine
# the SSE2 ones. The C unit tests run every build in one process already.
# (Open MPI's plugins leak at exit: no leak check on these probes, as in tests/CMakeLists.txt.)
probe() { ASAN_OPTIONS=detect_leaks=0 "$@" "$build/fmtrain" --version; }
widest=$(probe env | sed -n 's/.*kernels \([^)]*\)).*/\1/p')
[ -n "$widest" ] || { echo "tests/run.sh: fmtrain --version names no kernels" >&2; exit 1; }
for isa in x86-64-v3 baseline; do
  [ "$isa" = "$widest" ] && continue
  probe env FM_ISA="$isa" >/dev/null 2>&1 || continue
  env=(FM_ISA="$isa")
  [ "$isa" = x86-64-v3 ] && [ -z "${OPENBLAS_CORETYPE:-}" ] && env+=(OPENBLAS_CORETYPE=Haswell)
  echo "== the numerics' end-to-end tests with ${env[*]}"
  env "${env[@]}" ctest --test-dir "$build" --output-on-failure \
    -R '^(e2e_train|unet|recipes|deterministic|overlap|compat|unit_train|noalloc_1rank)$'
done
