#!/usr/bin/env bash
# Energy distance against function evaluations, per solver, for one trained checkpoint: samples
# with euler, midpoint, heun and rk4 at several step counts and dopri5 at several tolerances into
# RUN_DIR/solvers/, then analysis/fm_analyze.py solvers (table, solvers.json, solvers.png).
#
#   jobs/solvers.sh RUN_DIR [-n RANKS] [-N SAMPLES]      (default: all cores, 10000 samples)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
run="${1:?usage: jobs/solvers.sh RUN_DIR [-n RANKS] [-N SAMPLES]}"
shift
ranks="$(nproc)"
n=10000
while [ $# -gt 0 ]; do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    -N) n="$2"; shift 2 ;;
    *) echo "solvers.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
fmtrain="$here/build/fmtrain"
out="$run/solvers"
mkdir -p "$out"
sample() { # NAME, then --sample.KEY=VALUE overrides
  local name="$1"
  shift
  mpirun -np "$ranks" "$fmtrain" sample --checkpoint "$run/checkpoint.h5" -o "$out/$name.h5" \
    --sample.n="$n" --sample.trajectories=0 "$@" | tail -1
}
for s in 10 20 50 100 299; do sample "euler-$s" --sample.solver=euler --sample.steps=$s; done
for s in 5 10 25 50; do
  sample "midpoint-$s" --sample.solver=midpoint --sample.steps=$s
  sample "heun-$s" --sample.solver=heun --sample.steps=$s
done
for s in 3 5 10 25; do sample "rk4-$s" --sample.solver=rk4 --sample.steps=$s; done
for tol in 1e-2 1e-3 1e-4 1e-5; do
  sample "dopri5-$tol" --sample.solver=dopri5 --sample.atol=$tol --sample.rtol=$tol
done
/usr/bin/python3 "$here/analysis/fm_analyze.py" solvers "$out" --checkpoint "$run/checkpoint.h5"
