#!/usr/bin/env bash
# The recipe table of the README: at the seed budget (jobs/gmm11.ini: 5000 steps, global batch
# 1000), the seed recipe against the best found, three seeds each. Per run: training, 10,000
# samples, fmtrain logprob of 10,000 true draws, analysis/fm_analyze.py report; then one table
# (mean and each seed) of energy distance, modes, on-mode fraction, KL of the mode histogram,
# the KL estimate, function evaluations and training time. The recipes: the seed's; the best of
# the issue's axes (path, coupling, t distribution, EMA, solver); that with a 10x learning rate;
# and that with a Fourier time input (the best: README, "Beyond the seed's recipe").
#
#   jobs/recipes.sh [-n RANKS] [-o DIR]        (default: all cores, runs/recipes-<date>)
#   jobs/recipes.sh -r "name: --key=value ..."  add a recipe of your own (repeatable)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
ranks="$(nproc)"
out="$here/runs/recipes-$(date +%Y%m%d-%H%M%S)"
d5="--sample.solver=dopri5 --sample.atol=1e-4 --sample.rtol=1e-4"
recipes=(
  "seed: "
  "axes: --path.schedule=linear --optim.ema=0.998 $d5"
  "lr: --path.schedule=linear --optim.ema=0.997 --optim.lr=1e-2 $d5"
  "best: --path.schedule=linear --optim.ema=0.997 --optim.lr=1e-2 --model.time_embed=fourier --model.t_dim=8 $d5"
)
while [ $# -gt 0 ]; do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    -o) out="$2"; shift 2 ;;
    -r) recipes+=("$2"); shift 2 ;;
    *) echo "recipes.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bash "$here/jobs/install-deps.sh"
[ -f "$here/build/CMakeCache.txt" ] || cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$here/build" -j "$(nproc)" --target fmtrain >/dev/null
fmtrain="$here/build/fmtrain"
mkdir -p "$out"
for r in "${recipes[@]}"; do
  name="${r%%:*}"
  read -r -a keys <<< "${r#*:}"
  for seed in 0 1 2; do
    d="$out/$name-seed$seed"
    echo "== $name, seed $seed: ${keys[*]:-(the seed recipe)}" >&2
    mpirun -np "$ranks" "$fmtrain" -c "$here/jobs/gmm11.ini" -o "$d" --train.resume=never --train.progress=plain \
      --train.log_every=5000 --train.seed=$seed --sample.seed=$((seed + 100)) --sample.n=10000 \
      --sample.trajectories=100 "${keys[@]}" > "$d.log"
    mpirun -np "$ranks" "$fmtrain" logprob --checkpoint "$d/checkpoint.h5" --sample.n=10000 \
      --sample.seed=$((seed + 200)) --sample.solver=dopri5 --sample.atol=1e-5 --sample.rtol=1e-5 >> "$d.log"
    /usr/bin/python3 "$here/analysis/fm_analyze.py" report "$d" --no-plots --seed $seed >> "$d.log"
  done
done
/usr/bin/python3 - "$out" "${recipes[@]%%:*}" <<'PY'
import glob, json, os, re, statistics, sys
out, order = sys.argv[1], sys.argv[2:]
rows = {}
for m in sorted(glob.glob(f"{out}/*-seed*/metrics.json")):
    d = os.path.dirname(m)
    name, seed = re.match(r"(.*)-seed(\d+)$", os.path.basename(d)).groups()
    j = json.load(open(m))
    log = open(f"{d}.log").read()
    train_s = float(re.search(r"trained to step \d+ in ([0-9.]+) s", log).group(1))
    f = j["fmtrain"]
    rows.setdefault(name, []).append({"seed": int(seed), "ed": f["energy_distance"], "modes": f["modes_covered"],
                                      "on": f["within_3std"], "klm": f["kl_modes"], "kl": j["kl_estimate"],
                                      "nfe": j["nfe_mean"], "s": train_s, "floor": j["true_samples"]["energy_distance"]})
print(f"| recipe | seed | energy distance | modes | within 3 std | KL(modes) | KL estimate (nats) | evaluations | training s |")
print("|---|---|---|---|---|---|---|---|---|")
for name, rs in sorted(rows.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
    for r in sorted(rs, key=lambda r: r["seed"]):
        print(f"| {name} | {r['seed']} | {r['ed']:.4f} | {r['modes']}/11 | {100 * r['on']:.1f}% | {r['klm']:.4f} | "
              f"{r['kl']:.3f} | {r['nfe']:.1f} | {r['s']:.1f} |")
    med = lambda k: statistics.mean(r[k] for r in rs)
    print(f"| **{name}**, mean | | **{med('ed'):.4f}** | | {100 * med('on'):.1f}% | {med('klm'):.4f} | **{med('kl'):.3f}** | "
          f"{med('nfe'):.1f} | {med('s'):.1f} |")
fl = [r["floor"] for rs in rows.values() for r in rs]
print(f"true samples (10,000 against 10,000): energy distance {statistics.mean(fl):.4f}")
json.dump(rows, open(f"{out}/recipes.json", "w"), indent=2)
print(f"JSON: {out}/recipes.json; runs: {out}/")
PY
