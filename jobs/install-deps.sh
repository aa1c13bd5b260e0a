#!/usr/bin/env bash
# Installs the Debian packages fm needs, only those missing. As root it runs apt-get itself;
# otherwise it prints the command to run and fails.
#   jobs/install-deps.sh          to build and run fmtrain and the analysis
#   jobs/install-deps.sh --data   also the datasets Debian packages (Fashion-MNIST, for
#                                 analysis/fm_data.py fashion)
#   jobs/install-deps.sh --test   also what the test suite needs (a single-node SLURM: slurmctld,
#                                 slurmd, slurm-client, munge; started only by the tests) and --data
set -euo pipefail
pkgs=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
      libopenblas-dev python3 python3-h5py python3-numpy python3-matplotlib python3-pytest)
case "${1:-}" in
  --data) pkgs+=(dataset-fashion-mnist) ;;
  # the tests also open the outputs with xarray through both netCDF engines (named dimensions)
  --test) pkgs+=(slurmctld slurmd slurm-client munge dataset-fashion-mnist python3-xarray python3-h5netcdf python3-netcdf4) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "fm needs these Debian packages: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Daemons (munge, slurm) must not start at install time: the tests start their own.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
[ "$made_policy" = 1 ] && rm -f "$policy"
exit 0
