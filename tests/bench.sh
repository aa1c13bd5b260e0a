#!/usr/bin/env bash
# The benchmark: speed against this machine's own limit, and scaling over its cores.
#   bash tests/bench.sh [-r REPEATS] [-o bench.json] [-- fmbench options, e.g. -c jobs/gmm11.ini]
# Builds fmbench, then runs it (each setting REPEATS times, medians quoted) on
#   1 rank; P = $(nproc) ranks with the same global batch (strong) and with P times it (weak);
#   1 rank with P BLAS threads (the hybrid alternative); P ranks with train.overlap on and off;
#   and the wide model (hidden 1024,1024,1024) on P ranks with overlap off and on.
# Prints a table and writes JSON. Not a test: nothing here passes or fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=3
out=bench.json
while [ $# -gt 0 ]; do
  case "$1" in
    -r) repeats="$2"; shift 2 ;;
    -o) out="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(-c jobs/gmm11.ini)
bash jobs/install-deps.sh
[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target fmbench >/dev/null
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
echo "fmbench on $P cores, $repeats runs each:" >&2
# Repeats outermost: a noisy minute on a shared machine then touches every setting alike rather
# than all the runs of one (the ratios between settings are what the scaling figures use).
for r in $(seq "$repeats"); do
  run one 1
  run strong "$P" --train.overlap=off
  run weak "$P" --train.batch=$((batch * P))
  run threads 1 --train.threads="$P" --sample.batch=1024
  run overlap "$P" --train.overlap=on
  run wide "$P" --model.hidden=1024,1024,1024 --train.overlap=off --steps 30 --warmup 5 --sample-n 200
  run wide_overlap "$P" --model.hidden=1024,1024,1024 --train.overlap=on --steps 30 --warmup 5 --sample-n 200
done

/usr/bin/python3 - "$tmp" "$out" "$P" <<'PY'
import glob, json, statistics, sys
tmp, out, P = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {}
for f in sorted(glob.glob(f"{tmp}/*.json")):
    name = f.split("/")[-1].split(".")[0]
    runs.setdefault(name, []).append(json.load(open(f)))
med = {n: {k: statistics.median(r[k] for r in rs) if isinstance(rs[0][k], (int, float)) else rs[0][k]
           for k in rs[0]} for n, rs in runs.items()}
one, strong, weak = med["one"], med["strong"], med["weak"]
res = {"cores": P, "repeats": len(runs["one"]), "runs": med,
       "strong_efficiency": one["step_ms"] / (P * strong["step_ms"]),
       "weak_efficiency": one["step_ms"] / weak["step_ms"]}
json.dump(res, open(out, "w"), indent=2)
print(f"sgemm peak, 1 thread: {one['sgemm_peak_gflops']:.1f} GFLOP/s (median of {res['repeats']} runs of fmbench)")
print(f"step of the seed model: {one['step_mflop']:.1f} MFLOP; its FLOP time at that peak: {one['step_mflop'] / one['sgemm_peak_gflops']:.3f} ms")
print()
print("| setting | ranks x threads | batch | step ms | GFLOP/s | of peak | draw | fwd | bwd | all-reduce | optim | samples/s | sampler s (10k x 299) | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
label = {"one": "1 rank", "strong": "strong", "weak": "weak", "threads": "1 rank, threads", "overlap": "overlap on",
         "wide": "wide 1024x3", "wide_overlap": "wide, overlap on"}
for n in ["one", "strong", "weak", "threads", "overlap", "wide", "wide_overlap"]:
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
print(f"JSON: {out}")
PY
