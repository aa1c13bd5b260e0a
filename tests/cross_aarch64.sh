#!/usr/bin/env bash
# The kernel files compile for a 128-bit target too: aarch64 with NEON (4 floats, 32 registers),
# warnings as errors, and the vector bodies become NEON FMAs. No machine here runs the result;
# this keeps the one-body-per-width promise of include/fm/vec.h. Installs Debian's cross
# compiler when missing (as root; otherwise says what to install and skips).
set -euo pipefail
cd "$(dirname "$0")/.."
cc=aarch64-linux-gnu-gcc
if ! command -v "$cc" >/dev/null || [ ! -d /usr/aarch64-linux-gnu/include ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "cross_aarch64: skipped: needs gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2
    exit 0
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc-aarch64-linux-gnu \
    libc6-dev-arm64-cross >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for f in src/kernels.c src/conv_direct.c src/coupling_kern.c src/rng_rows.c src/isa.c \
         src/conv_direct_api.c; do
  "$cc" -std=c11 -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Werror -Wno-psabi -fno-trapping-math -ffp-contract=fast \
    -DFM_ISA_ID=baseline -DFM_ISA_X86=0 -Iinclude -c "$f" -o "$out/$(basename "$f").o"
done
n=$(aarch64-linux-gnu-objdump -d "$out/conv_direct.c.o" | grep -c 'fmla.*\.4s' || true)
[ "$n" -gt 100 ] || { echo "cross_aarch64: the direct convolutions have $n NEON FMAs" >&2; exit 1; }
echo "cross_aarch64: the kernel files compile for aarch64 (NEON: $n vector FMAs in the direct convolutions)"
