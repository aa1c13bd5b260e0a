#!/usr/bin/env bash
# Builds tests/scaling/sim_step with SimGrid's smpicc into build-smpi/: the numerics (fmcore's
# sources, with CMakeLists.txt's per-file flags), src/comm.c and src/train.c, and the driver (with
# tests/scaling/nbc.c's non-blocking all-reduce for src/comm.c's).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build-smpi
mkdir -p "$out"
core=$(sed -n '/^add_library(fmcore STATIC/,/)/p' CMakeLists.txt | grep -o 'src/[a-z_]*\.c')
cc=(smpicc -O3 -std=gnu11 -Iinclude -DFM_NO_PREINIT -DFM_VERSION_STRING='"smpi"' -DFM_GIT_DESCRIBE='"smpi"')
objs=()
for src in $core src/comm.c src/train.c tests/scaling/nbc.c tests/scaling/sim_step.c; do
  flags=()
  case "$src" in
    src/comm.c) # its non-blocking all-reduce is tests/scaling/nbc.c's (Open MPI's libnbc, simulated)
      flags=(-Dfm_comm_iallreduce_sum=comm_iallreduce_unused -Dfm_comm_progress=comm_progress_unused
             -Dfm_comm_wait=comm_wait_unused) ;;
    src/kernels.c|src/conv_direct.c) flags=(-fno-trapping-math -ffp-contract=fast -Wno-psabi) ;;
    src/rng.c) flags=(-fno-trapping-math -ffp-contract=off -fno-math-errno) ;;
    src/optim.c) flags=(-fno-math-errno) ;;
  esac
  obj="$out/$(basename "$src" .c).o"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ]; then "${cc[@]}" "${flags[@]}" -c "$src" -o "$obj"; fi
  objs+=("$obj")
done
smpicc -o "$out/sim_step" "${objs[@]}" -lopenblas -lm
echo "$out/sim_step"
