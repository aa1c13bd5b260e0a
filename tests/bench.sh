#!/usr/bin/env bash
# The benchmark: speed against this machine's own limit, and scaling over its cores.
#   bash tests/bench.sh [-r REPEATS] [-o bench.json] [-- fmbench options, e.g. -c jobs/gmm11.ini]
# Builds fmbench, then runs it (each setting REPEATS times, medians quoted) on
#   1 rank; P = $(nproc) ranks with the same global batch (strong) and with P times it (weak);
#   1 rank with P BLAS threads (the hybrid alternative); P ranks with train.overlap on and off, and
#   with train.deterministic = 8;
#   and the wide model (hidden 1024,1024,1024) on P ranks with overlap off and on. Then what users
#   run: the whole seed job (5000 steps of jobs/gmm11.ini, no sampling) on 1 and on P ranks, its
#   training time from fmtrain's log, and the step and the sampler of the model it trained
#   (fmbench --checkpoint) on 1 and P ranks beside the fresh model's.
# Prints a table and writes JSON. Not a test: nothing here passes or fails on speed.
#   bash tests/bench.sh --unet [-r REPEATS] [-o bench-unet.json]
# instead measures the U-Net of jobs/fashion-unet.ini (training images/s at batch 64, and forward
# evaluations/s of the sampler, unguided) on 1 and $(nproc) ranks, beside PyTorch on the same
# network, batch and one thread (tests/bench_torch_unet.py, when python3-torch is installed).
#   bash tests/bench.sh --ot [-r REPEATS] [-o bench-ot.json]
# instead measures minibatch OT (train.coupling = ot) on the seed model: the step with and without
# it, and the assignment alone, at global batches 256, 1000 and 4000 on 1 and $(nproc) ranks.
#   bash tests/bench.sh --kernels
# instead times each kernel under each build of the kernels this CPU runs (tests/bench_kernels.c):
# ns per element and the ratio to the widest build.
# Any of them with --isa NAME (baseline, x86-64-v3, x86-64-v4): fmtrain's kernels of that build
# (FM_ISA); x86-64-v3 also gives OpenBLAS its Haswell kernels (unless OPENBLAS_CORETYPE is set)
# and PyTorch its AVX2 ones (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2), as on AMD's Zen.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=3
out=bench.json
unet=0
ot=0
kernels=0
while [ $# -gt 0 ]; do
  case "$1" in
    -r) repeats="$2"; shift 2 ;;
    -o) out="$2"; shift 2 ;;
    --unet) unet=1; [ "$out" = bench.json ] && out=bench-unet.json; shift ;;
    --ot) ot=1; [ "$out" = bench.json ] && out=bench-ot.json; shift ;;
    --kernels) kernels=1; shift ;;
    --isa)
      export FM_ISA="$2"
      if [ "$2" = x86-64-v3 ]; then
        export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
      fi
      shift 2 ;;
    --) shift; break ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(-c jobs/gmm11.ini)
bash jobs/install-deps.sh
[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target fmbench fmbench_kernels fmtrain >/dev/null
if [ "$kernels" = 1 ]; then
  grep -m1 "model name" /proc/cpuinfo
  build/tests/fmbench_kernels
  exit 0
fi
P=$(nproc)
mpi=(mpirun --bind-to core)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
batch=$(awk -F= '/^[[:space:]]*batch[[:space:]]*=/{gsub(/ /,"",$2); print $2; exit}' "${extra[1]:-jobs/gmm11.ini}" 2>/dev/null || true)
batch=${batch:-1000}

run() { # name ranks args...: one run of one setting
  local name=$1 np=$2; shift 2
  echo "  $name ($r/$repeats)" >&2
  "${mpi[@]}" -np "$np" build/tests/fmbench "${extra[@]}" --json "$tmp/$name.$r.json" "$@" >/dev/null
}
seed_job() { # ranks: the seed job end to end; its checkpoint is the trained model below
  local np=$1 d="$tmp/job$1.$r"
  echo "  seed job on $np rank(s) ($r/$repeats)" >&2
  "${mpi[@]}" -np "$np" build/fmtrain -c jobs/gmm11.ini -o "$d" --sample.n=0 --train.progress=plain \
    --train.checkpoint_every=0 --train.log_every=1000 > "$d.log"
  awk -v np="$np" '/^trained to step/ {printf "{\"ranks\": %d, \"seed_job_s\": %s}\n", np, $6}' "$d.log" > "$tmp/seedjob$np.$r.json"
}
if [ "$unet" = 1 ]; then
  data=data/fashion-mnist.h5
  if [ ! -f "$data" ]; then
    bash jobs/install-deps.sh --data
    /usr/bin/python3 analysis/fm_data.py fashion "$data"
  fi
  u=(-c jobs/fashion-unet.ini --data.file="$data" --train.batch=64 --steps 10 --warmup 2
     --sample-n 256 --sample.steps=4 --sample.guidance=1 --sample.batch=32)
  echo "fmbench (U-Net) on $P cores, $repeats runs each:" >&2
  for r in $(seq "$repeats"); do
    echo "  1 rank, $P ranks ($r/$repeats)" >&2
    "${mpi[@]}" -np 1 build/tests/fmbench "${u[@]}" --json "$tmp/unet1.$r.json" > /dev/null
    "${mpi[@]}" -np "$P" build/tests/fmbench "${u[@]}" --json "$tmp/unet$P.$r.json" > /dev/null
  done
  if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    echo "  PyTorch reference (tests/bench_torch_unet.py)" >&2
    OMP_NUM_THREADS=1 /usr/bin/python3 tests/bench_torch_unet.py --batch 64 --steps 10 --json "$tmp/torch.json" >/dev/null
  fi
  /usr/bin/python3 - "$tmp" "$out" "$P" <<'PY'
import glob, json, statistics, sys
tmp, out, P = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {}
for f in glob.glob(f"{tmp}/unet*.json"):
    r = json.load(open(f))
    runs.setdefault(r["ranks"], []).append(r)
med = {p: {k: statistics.median(x[k] for x in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
       for p, rs in runs.items()}
for p, rs in runs.items():
    med[p]["isa"] = rs[0]["isa"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
one = med[1]
print(f"CPU: {cpu}, {P} cores; kernels {one.get('isa', '?')}, FMA peak 1 core {one['fma_peak_gflops']:.1f} GFLOP/s; "
      f"sgemm peak 1 thread {one['sgemm_peak_gflops']:.1f} GFLOP/s; "
      f"U-Net {one['step_mflop'] / one['batch'] / 3:.0f} MFLOP a forward per image (about; step / batch / 3)")
torch = None
try:
    torch = json.load(open(f"{tmp}/torch.json"))
except FileNotFoundError:
    pass
print("| | ranks | training images/s | per core | of peak | sampler forwards/s | per core | of peak | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|")
for p in sorted(med):
    r = med[p]
    fw = r["evaluations_per_s"]
    print(f"| fmtrain | {p} | {r['samples_per_s']:.1f} | {r['samples_per_s'] / p:.1f} | {100 * r['fraction_of_peak']:.0f}% | "
          f"{fw:.1f} | {fw / p:.1f} | {100 * r['sampler_fraction_of_peak']:.0f}% | {r['peak_rss_mb']:.0f} |")
if torch:
    print(f"| PyTorch {torch['torch']} | 1 thread | {torch['train_images_per_s']:.1f} | {torch['train_images_per_s']:.1f} | | "
          f"{torch['forward_images_per_s']:.1f} | {torch['forward_images_per_s']:.1f} | | |")
    print(f"per core, fmtrain / PyTorch: training {one['samples_per_s'] / torch['train_images_per_s']:.2f}x, "
          f"sampling {one['evaluations_per_s'] / torch['forward_images_per_s']:.2f}x")
fma = one["fma_peak_gflops"] * 1e9
print(f"of the 1-core FMA peak: fmtrain training {one['step_gflops'] * 1e9 / fma:.0%}, sampling "
      f"{one['sampler_fraction_of_peak'] * one['sgemm_peak_gflops'] * 1e9 / fma:.0%}")
json.dump({"cpu": cpu, "runs": {str(p): r for p, r in med.items()}, "pytorch": torch}, open(out, "w"), indent=2)
print(f"JSON: {out}")
PY
  exit 0
fi
if [ "$ot" = 1 ]; then
  echo "fmbench (OT coupling) on $P cores, $repeats runs each:" >&2
  for r in $(seq "$repeats"); do
    for b in 256 1000 4000; do
      steps=20
      [ "$b" = 4000 ] && steps=3
      for np in 1 "$P"; do
        for c in independent ot; do
          echo "  batch $b, $np rank(s), $c ($r/$repeats)" >&2
          "${mpi[@]}" -np "$np" build/tests/fmbench -c jobs/gmm11.ini --train.batch="$b" --train.coupling="$c" \
            --steps "$steps" --warmup 1 --sample-n 100 --json "$tmp/ot-$b-$np-$c.$r.json" > /dev/null
        done
      done
    done
  done
  /usr/bin/python3 - "$tmp" "$out" "$P" <<'PY'
import glob, json, statistics, sys
tmp, out, P = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {}
for f in glob.glob(f"{tmp}/ot-*.json"):
    _, b, np_, c = f.split("/")[-1].split(".")[0].split("-")
    runs.setdefault((int(b), int(np_), c), []).append(json.load(open(f)))
med = {k: {n: statistics.median(x[n] for x in rs) for n in ("step_ms", "couple_ms")} for k, rs in runs.items()}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
print(f"CPU: {cpu}, {P} cores; seed model (jobs/gmm11.ini), medians of {len(next(iter(runs.values())))} runs")
print("| global batch | ranks | step ms, independent | step ms, ot | of which the assignment | OT's share of the step |")
print("|---|---|---|---|---|---|")
for b, np_ in sorted({(b, n) for b, n, _ in med}):
    i, o = med[(b, np_, "independent")], med[(b, np_, "ot")]
    print(f"| {b} | {np_} | {i['step_ms']:.2f} | {o['step_ms']:.2f} | {o['couple_ms']:.2f} | "
          f"{100 * o['couple_ms'] / o['step_ms']:.0f}% |")
json.dump({"cpu": cpu, "runs": {f"{b}-{n}-{c}": v for (b, n, c), v in med.items()}}, open(out, "w"), indent=2)
print(f"JSON: {out}")
PY
  exit 0
fi
echo "fmbench on $P cores, $repeats runs each:" >&2
# Repeats outermost: a noisy minute on a shared machine then touches every setting alike rather
# than all the runs of one (the ratios between settings are what the scaling figures use).
for r in $(seq "$repeats"); do
  run one 1
  run strong "$P" --train.overlap=off
  run weak "$P" --train.batch=$((batch * P))
  run threads 1 --train.threads="$P" --sample.batch=1024
  run overlap "$P" --train.overlap=on
  run deterministic "$P" --train.deterministic=8
  run wide "$P" --model.hidden=1024,1024,1024 --train.overlap=off --steps 30 --warmup 5 --sample-n 200
  run wide_overlap "$P" --model.hidden=1024,1024,1024 --train.overlap=on --steps 30 --warmup 5 --sample-n 200
  seed_job 1
  seed_job "$P"
  run one_trained 1 --checkpoint "$tmp/job1.$r/checkpoint.h5"
  run strong_trained "$P" --checkpoint "$tmp/job1.$r/checkpoint.h5" --train.overlap=off
done
# The post's recipe in PyTorch on one thread, side by side (once: it takes about a minute).
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "  PyTorch reference (tests/bench_torch.py)" >&2
  OMP_NUM_THREADS=1 /usr/bin/python3 tests/bench_torch.py --json "$tmp/torchref.json" >/dev/null
fi

/usr/bin/python3 - "$tmp" "$out" "$P" <<'PY'
import glob, json, statistics, sys
tmp, out, P = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {}
for f in sorted(glob.glob(f"{tmp}/*.json")):
    name = f.split("/")[-1].split(".")[0]
    if not name.startswith(("seedjob", "torchref")):
        runs.setdefault(name, []).append(json.load(open(f)))
med = {n: {k: statistics.median(r[k] for r in rs) if isinstance(rs[0][k], (int, float)) else rs[0][k]
           for k in rs[0]} for n, rs in runs.items()}
one, strong, weak = med["one"], med["strong"], med["weak"]
res = {"cores": P, "repeats": len(runs["one"]), "runs": med,
       "strong_efficiency": one["step_ms"] / (P * strong["step_ms"]),
       "weak_efficiency": one["step_ms"] / weak["step_ms"]}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
res["cpu"] = cpu
print(f"CPU: {cpu}, {P} cores")
print(f"sgemm peak, 1 thread: {one['sgemm_peak_gflops']:.1f} GFLOP/s (median of {res['repeats']} runs of fmbench)")
print(f"step of the seed model: {one['step_mflop']:.1f} MFLOP; its FLOP time at that peak: {one['step_mflop'] / one['sgemm_peak_gflops']:.3f} ms")
tr = med.get("one_trained", one)
print(f"kernels {one['isa']}; FMA peak, 1 core: {one['fma_peak_gflops']:.1f} GFLOP/s; the 1-rank step at "
      f"{one['step_gflops'] / one['fma_peak_gflops']:.0%} of it fresh, {tr['step_gflops'] / one['fma_peak_gflops']:.0%} trained")
print()
print("| setting | ranks x threads | batch | step ms | GFLOP/s | of peak | draw | fwd | bwd | all-reduce | optim | samples/s | sampler s (10k x 299) | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
label = {"one": "1 rank", "strong": "strong", "weak": "weak", "threads": "1 rank, threads", "overlap": "overlap on",
         "wide": "wide 1024x3", "wide_overlap": "wide, overlap on", "one_trained": "1 rank, trained",
         "strong_trained": "strong, trained"}
for n in ["one", "one_trained", "strong", "strong_trained", "weak", "threads", "overlap", "wide", "wide_overlap"]:
    r = med[n]
    samp = f"{r['sampler_s']:.2f}" if r["sampler_n"] == 10000 else f"({int(r['sampler_n'])})"
    print(f"| {label[n]} | {int(r['ranks'])} x {int(r['threads'])} | {int(r['batch'])} | {r['step_ms']:.3f} | "
          f"{r['step_gflops']:.1f} | {100 * r['fraction_of_peak']:.0f}% | {r['draw_ms']:.3f} | {r['forward_ms']:.3f} | "
          f"{r['backward_ms']:.3f} | {r['allreduce_ms']:.3f} | {r['optim_ms']:.3f} | {r['samples_per_s']:.0f} | {samp} | "
          f"{r['peak_rss_mb']:.1f} |")
print()
print(f"strong scaling 1 -> {P} ranks: {100 * res['strong_efficiency']:.0f}% efficiency; "
      f"weak scaling: {100 * res['weak_efficiency']:.0f}%")
t = med["threads"]
print(f"{P} ranks x 1 thread: {strong['step_ms']:.3f} ms a step; 1 rank x {P} threads: {t['step_ms']:.3f} ms "
      f"-> {'ranks' if strong['step_ms'] < t['step_ms'] else 'threads'} faster here")
print(f"overlap on the seed model: {med['overlap']['step_ms']:.3f} vs {strong['step_ms']:.3f} ms off; "
      f"on the wide model: {med['wide_overlap']['step_ms']:.2f} vs {med['wide']['step_ms']:.2f} ms off")
dt = med["deterministic"]
print(f"deterministic mode (train.deterministic = 8) on {P} ranks: {dt['step_ms']:.3f} ms a step against "
      f"{strong['step_ms']:.3f} ({100 * (dt['step_ms'] / strong['step_ms'] - 1):+.0f}%)")
ot, st = med["one_trained"], med["strong_trained"]
print(f"trained / fresh model: step {ot['step_ms'] / one['step_ms']:.2f} on 1 rank, "
      f"{st['step_ms'] / strong['step_ms']:.2f} on {P}; sampler {ot['sampler_s'] / one['sampler_s']:.2f} on 1 rank, "
      f"{st['sampler_s'] / strong['sampler_s']:.2f} on {P}")
jobs = {}
for f in glob.glob(f"{tmp}/seedjob*.json"):
    j = json.load(open(f))
    jobs.setdefault(j["ranks"], []).append(j["seed_job_s"])
res["seed_job_s"] = {str(k): statistics.median(v) for k, v in jobs.items()}
print("seed job, 5000 steps (training time from the log, median): " +
      ", ".join(f"{k} rank{'s' if k > 1 else ''} {statistics.median(v):.2f} s (runs: {', '.join(f'{x:.2f}' for x in sorted(v))})"
                for k, v in sorted(jobs.items())))
try:
    ref = json.load(open(f"{tmp}/torchref.json"))
    res["pytorch"] = ref
    job1 = res["seed_job_s"]["1"]
    print(f"PyTorch {ref['torch']} (1 thread, tests/bench_torch.py): {ref['steps']} steps in {ref['train_s']:.1f} s "
          f"({ref['step_ms']:.2f} ms a step), sampling {ref['sample_n']} x 299 in {ref['sample_s']:.2f} s; "
          f"fmtrain 1 rank: {ref['train_s'] / job1:.1f}x faster training (trained-model step "
          f"{ref['step_ms'] / ot['step_ms']:.1f}x), sampling {ref['sample_s'] / ot['sampler_s']:.1f}x faster")
except FileNotFoundError:
    print("PyTorch reference: not run (no python3-torch)")
json.dump(res, open(out, "w"), indent=2)
print(f"JSON: {out}")
PY
