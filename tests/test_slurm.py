"""The SLURM path under a real single-node SLURM (slurmctld, slurmd, munge), started by
tests/slurm/cluster.sh and stopped after: the seed job, preemption with requeue and resume, a job
array sweep and its summary, and a launcher without PMI."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import FMTRAIN, SEED_INI, SOURCE, history, params, run, skip_unless_required

CLUSTER = str(SOURCE / "tests" / "slurm" / "cluster.sh")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("slurmctld", path="/usr/sbin:/usr/bin"):
        skip_unless_required("needs root and Debian's slurmctld slurmd slurm-client munge (jobs/install-deps.sh --test)")
    d = tmp_path_factory.mktemp("slurm")
    r = subprocess.run(["bash", CLUSTER, "start", str(d)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        subprocess.run(["bash", CLUSTER, "stop", str(d)], capture_output=True)
        raise AssertionError(f"SLURM did not start:\n{r.stdout}\n{r.stderr}")
    env = dict(os.environ, SLURM_CONF=str(d / "slurm.conf"), FMTRAIN=FMTRAIN, CONFIG=SEED_INI)
    yield env
    subprocess.run(["bash", CLUSTER, "stop", str(d)], capture_output=True, timeout=60)


def _sbatch(env, script, args, cwd, wait=True, extra_env=None):
    cmd = ["sbatch", "--parsable"] + (["--wait"] if wait else []) + [str(SOURCE / "jobs" / script)] + args
    r = subprocess.run(cmd, cwd=cwd, env=dict(env, **(extra_env or {})), capture_output=True, text=True, timeout=600)
    return r, r.stdout.strip().split(";")[0].split("\n")[0]


def _job_state(env, job):
    r = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True)
    for tok in r.stdout.split():
        if tok.startswith("JobState="):
            return tok.split("=")[1]
    return "UNKNOWN"


def test_seed_job(slurm, tmp_path):
    out = tmp_path / "run"
    r, job = _sbatch(slurm, "gmm11.sbatch", ["--train.steps=60", "--sample.n=200", "--sample.trajectories=10"], tmp_path,
                     extra_env={"OUT": str(out)})
    log = (tmp_path / f"fm-gmm11-{job}.out").read_text()
    assert r.returncode == 0, r.stderr + log
    assert "2 ranks" in log and "trained to step 60" in log
    steps, loss = history(out / "checkpoint.h5")
    assert list(steps) == list(range(1, 61)) and np.all(np.isfinite(loss))
    with h5py.File(out / "samples.h5") as f:
        assert f["samples"].shape == (200, 2) and f["trajectories"].shape == (10, 300, 2)
    # The same run with mpirun on 2 ranks: the same history (srun is only the launcher).
    run(["-c", SEED_INI, "-o", tmp_path / "ref", "--train.steps=60", "--sample.n=0"], np_=2)
    np.testing.assert_array_equal(loss, history(tmp_path / "ref/checkpoint.h5")[1])


def test_preemption_requeues_and_resumes_to_the_same_end(slurm, tmp_path):
    out = tmp_path / "run"
    args = ["--train.steps=6000", "--train.log_every=500", "--train.checkpoint_every=1000", "--sample.n=0"]
    r, job = _sbatch(slurm, "preempt.sbatch", args, tmp_path, wait=False, extra_env={"OUT": str(out)})
    assert r.returncode == 0, r.stderr
    log = tmp_path / f"fm-preempt-{job}.out"
    t0 = time.time()
    while "step 1000/6000" not in (log.read_text() if log.exists() else ""):
        assert time.time() - t0 < 120, "the job did not reach step 1000"
        time.sleep(0.3)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=slurm, check=True)
    while _job_state(slurm, job) not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
        assert time.time() - t0 < 240, f"job {job} still {_job_state(slurm, job)}"
        time.sleep(1)
    text = log.read_text()
    assert _job_state(slurm, job) == "COMPLETED", text
    assert "stopped by a signal at step" in text and "fm: to be continued (requeued)" in text
    assert "restart count 1" in text and "resuming" in text and text.rstrip().endswith("fm: done")
    # An uninterrupted run on as many ranks ends with the same parameters, bit for bit.
    run(["-c", SEED_INI, "-o", tmp_path / "ref"] + args, np_=2)
    pa, pb = params(out / "checkpoint.h5"), params(tmp_path / "ref/checkpoint.h5")
    for k in pb:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def test_sweep_array_and_its_summary(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    r, job = _sbatch(slurm, "sweep.sbatch", ["--train.steps=40", "--sample.n=300", "--sample.trajectories=0"], tmp_path,
                     extra_env={"SWEEP": str(sweep)})
    assert r.returncode == 0, r.stderr
    tasks = sorted(p.name for p in sweep.iterdir())
    assert tasks == ["task-0", "task-1", "task-2"]
    a = subprocess.run([sys.executable, str(SOURCE / "analysis" / "fm_analyze.py"), "sweep", str(sweep)],
                       capture_output=True, text=True)
    assert a.returncode == 0, a.stderr
    header = a.stdout.splitlines()[0].split()
    for col in ("model.hidden", "optim.lr", "train.seed", "final_loss", "energy_distance"):
        assert col in header, a.stdout
    rows = (sweep / "sweep.csv").read_text().splitlines()
    assert len(rows) == 4 and "256,16" in rows[3]
    assert (sweep / "sweep.png").stat().st_size > 5000


def test_srun_without_pmi_is_refused(slurm, tmp_path):
    r = subprocess.run(["srun", "-n", "2", "--mpi=none", FMTRAIN, "-c", SEED_INI, "-o", str(tmp_path / "x")],
                       env=slurm, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "SLURM started 2 tasks but MPI sees 1 rank" in r.stderr
    assert not (tmp_path / "x").exists()
