#!/usr/bin/env bash
# Scaling of the training step on a simulated cluster (SimGrid's SMPI; Debian's simgrid and
# libsimgrid-dev): fmtrain's trainer and MPI calls (tests/scaling/sim_step.c) on 1 to 1024
# simulated hosts of a two-level fat tree (32 x 32 hosts, full bisection) with 25 Gb/s or
# 100 Gb/s links of 2 us latency, Open MPI's choice of collective algorithms (smpi/coll-selector:
# ompi). Computation is this machine's: each model's step on one rank (fmbench) gives its time per
# sample, which every simulated rank spends on its shard (--compute); the all-reduce is the
# trainer's own call, simulated. A simulated host is one core of this machine.
#   bash tests/scaling/run.sh [-o DIR]        (default runs/scaling-<date>; about 40 minutes on 2 cores)
# Writes DIR/scaling.json, a table on stdout and DIR/scaling.png. Not part of the test suite.
# train.overlap: its non-blocking all-reduce is Open MPI's libnbc schedule (tests/scaling/nbc.c),
# moved on only when fmtrain polls (MPI_Test after each finished gradient range) or waits, as
# Open MPI does without a progress thread; SMPI's own MPI_Iallreduce is another algorithm.
#   ROWS=overlap bash tests/scaling/run.sh [-o DIR]    only the overlap rows (about 8 minutes)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
out="$here/runs/scaling-$(date +%Y%m%d-%H%M%S)"
[ "${1:-}" = -o ] && out="$2"
mkdir -p "$out"
command -v smpirun >/dev/null || { echo "run.sh: needs SimGrid: apt-get install simgrid libsimgrid-dev" >&2; exit 2; }
[ -f "$here/build/CMakeCache.txt" ] || cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
sim="$(bash "$here/tests/scaling/build.sh" | tail -1)"
for i in $(seq 0 1023); do echo "node-$i"; done > "$out/hosts.txt"
for bw in 25 100; do
  cat > "$out/fattree-${bw}g.xml" <<XML
<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <cluster id="c" prefix="node-" radical="0-1023" suffix="" speed="1Gf" bw="${bw}Gbps" lat="2us"
           topology="FAT_TREE" topo_parameters="2;32,32;1,32;1,1" loopback_bw="100GBps" loopback_lat="0"/>
</platform>
XML
done
export OPENBLAS_NUM_THREADS=1
one() { # label platform ranks args...: one simulation, one JSON line with the label
  local label=$1 plat=$2 np=$3 bench=no
  shift 3
  case "$label" in *-trainer) bench=yes ;; esac
  # smpi/test: SMPI charges 100 us of simulated time for every MPI_Test by default; one costs
  # about 1 us on a real network (fmtrain calls it once per gradient range with overlap on).
  smpirun -np "$np" -platform "$out/$plat" -hostfile "$out/hosts.txt" --cfg=smpi/host-speed:1Gf \
    --cfg=smpi/coll-selector:ompi --cfg=smpi/simulate-computation:$bench --cfg=smpi/test:1e-6 \
    --log=root.thres:critical \
    "$here/$sim" "$@" 2>/dev/null |
    sed "s|^{|{\"label\": \"$label\", \"platform\": \"$plat\", |"
}
# Calibration: each model's step on one rank of this machine (fmbench, warm caches), per sample.
# The simulations then count only that (smpi/simulate-computation:no): SMPI's timing of the real
# code between MPI calls, with hundreds of simulated ranks taking turns on one core, measured 1.76 s
# for a 14 ms U-Net step at 512 ranks. The all-reduce's own additions are not counted.
cmake --build "$here/build" --target fmbench >/dev/null
seed=("$here/jobs/gmm11.ini")
unet=("$here/jobs/fashion-unet.ini" --data.target=gaussian --data.dim=784 --data.shape=1,28,28 --model.classes=0
      --train.eval_every=0 --optim.ema=0)
mpirun -np 1 "$here/build/tests/fmbench" -c "${seed[@]}" --sample-n 100 --json "$out/bench-seed.json" >/dev/null
mpirun -np 1 "$here/build/tests/fmbench" -c "${unet[@]}" --train.batch=64 --steps 10 --warmup 2 --sample-n 4 \
  --sample.steps=1 --json "$out/bench-unet.json" >/dev/null
wide=("$here/jobs/gmm11.ini" --model.hidden=1024,1024,1024)
mpirun -np 1 "$here/build/tests/fmbench" -c "${wide[@]}" --steps 10 --warmup 2 --sample-n 4 \
  --json "$out/bench-wide.json" >/dev/null
per() { /usr/bin/python3 -c "import json; r = json.load(open('$1')); print(r['step_ms'] / 1e3 / r['batch'])"; }
seed_s=$(per "$out/bench-seed.json")
unet_s=$(per "$out/bench-unet.json")
wide_s=$(per "$out/bench-wide.json")
echo "  calibration: seed model ${seed_s} s a sample, U-Net ${unet_s} s an image, wide MLP ${wide_s} s a sample" >&2
{
  # train.overlap off, on (from a buffer of its own, as fmtrain sums now), and on as an in-place
  # sum would go (FM_SIM_IALLREDUCE=inplace: fmtrain before), 25 Gb/s: labels CASE/VARIANT.
  # (not 1024: the wide MLP's simulated ranks would need 17 GB there)
  for np in 4 64 256; do
    echo "  overlap, $np ranks" >&2
    for v in off on inplace; do
      ov=on; [ $v = off ] && ov=off
      export FM_SIM_IALLREDUCE=$v
      one "seed-strong/$v" fattree-25g.xml "$np" "${seed[@]}" --compute "$seed_s" --train.overlap=$ov
      one "wide-weak/$v" fattree-25g.xml "$np" "${wide[@]}" --compute "$wide_s" --train.overlap=$ov \
        --train.batch=$((64 * np)) --steps 3 --warmup 1
      one "unet-weak/$v" fattree-25g.xml "$np" "${unet[@]}" --compute "$unet_s" --train.overlap=$ov \
        --train.batch=$((64 * np)) --steps 3 --warmup 1
    done
    unset FM_SIM_IALLREDUCE
  done
  if [ "${ROWS:-all}" != overlap ]; then
    for plat in fattree-25g.xml fattree-100g.xml; do
      for np in 1 2 64 128 256 512 1024; do
        echo "  $np ranks, $plat" >&2
        one seed-strong "$plat" "$np" "${seed[@]}" --compute "$seed_s"
        one seed-weak "$plat" "$np" "${seed[@]}" --compute "$seed_s" --train.batch=$((1000 * np))
        one unet-strong "$plat" "$np" "${unet[@]}" --compute "$unet_s" --steps 3 --warmup 1
        one unet-weak "$plat" "$np" "${unet[@]}" --compute "$unet_s" --steps 3 --warmup 1 --train.batch=$((64 * np))
      done
    done
    # The real trainer under the simulator, its computation timed as it runs (simulate-computation
    # on), for comparison: 64 simulated ranks take turns on one core, with cold caches at every turn.
    for np in 1 2 64; do
      echo "  the trainer itself, $np ranks" >&2
      one seed-strong-trainer fattree-25g.xml "$np" "${seed[@]}"
    done
  fi
} > "$out/runs.jsonl"
/usr/bin/python3 "$here/tests/scaling/report.py" "$out"
