#!/usr/bin/env bash
# A single-node SLURM for the tests, without systemd and without cgroups (README.md beside this
# file says why each setting is here).
#   cluster.sh start DIR   writes DIR/slurm.conf, starts munged, slurmctld, slurmd; waits for the node
#   cluster.sh stop DIR    stops what start started (by pid)
# Callers export SLURM_CONF=DIR/slurm.conf. Needs root and Debian's slurmctld slurmd slurm-client munge.
set -euo pipefail
cmd=$1
dir=$(realpath -m "$2")
host=$(hostname -s)

start() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  # The node advertises 4 CPUs on 2 cores (config_overrides) so that tests may run 3 tasks.
  cat > "$dir/slurm.conf" <<CONF
ClusterName=fmtest
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=pmix
MailProg=/bin/true
EnforcePartLimits=ALL
ReturnToService=2
AuthInfo=cred_expire=10
SchedulerParameters=sched_interval=2,bf_interval=1
KillWait=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  if ! pgrep -x munged >/dev/null; then
    [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey -c 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge /run/munge
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
    touch "$dir/started-munged"
  fi
  # Daemons must not hold the caller's pipes open (a test harness waits for their end).
  /usr/sbin/slurmctld -c -f "$dir/slurm.conf" </dev/null >/dev/null 2>&1
  /usr/sbin/slurmd -N "$host" -f "$dir/slurm.conf" </dev/null >/dev/null 2>&1
  for _ in $(seq 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    case "$state" in idle*) echo "slurm up: $host $state"; return 0 ;; esac
    sleep 0.5
  done
  echo "cluster.sh: the node did not become idle (state '$state'); logs in $dir/log" >&2
  exit 1
}

stop() {
  export SLURM_CONF=$dir/slurm.conf
  scontrol shutdown >/dev/null 2>&1 || true
  for f in slurmctld slurmd; do
    [ -f "$dir/$f.pid" ] && kill "$(cat "$dir/$f.pid")" 2>/dev/null || true
  done
  sleep 1
  pkill -f "slurmstepd" 2>/dev/null || true
  if [ -f "$dir/started-munged" ]; then pkill -x munged || true; rm -f "$dir/started-munged"; fi
  echo "slurm stopped"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
