"""Nothing lost: signals, a killed rank, a crash inside the checkpoint write, NaNs, numbered
checkpoints, resume across rank counts, and the bad files and disks of a shared cluster."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import FMTRAIN, SEED_INI, assert_close_rel, assert_refused, history, params, run, skip_unless_required, tree_digest

FAST = ["--sample.n=0", "--train.log_every=25"]


def _step(ckpt):
    with h5py.File(ckpt, "r") as f:
        return int(f.attrs["step"])


def _start(args, np_=2, env=None):
    cmd = ["mpirun", "--oversubscribe", "-np", str(np_), FMTRAIN] + [str(a) for a in args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))


def _wait_for_line(proc, fragment, timeout=120):
    """Reads the job's stdout until a line holds fragment (the job is then mid-training)."""
    t0 = time.time()
    for line in proc.stdout:
        if fragment in line:
            return
        assert time.time() - t0 < timeout, f"no '{fragment}' within {timeout} s"
    raise AssertionError(f"the job ended before printing '{fragment}'")


def _rank_pids(outdir):
    """The fmtrain processes (not mpirun) of the job writing outdir."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "fmtrain" and str(outdir) in (p / "cmdline").read_text():
                    pids.append(int(p.name))
            except OSError:
                pass
    return sorted(pids)


def _same_params(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: 600 steps on 2 ranks without interruption."""
    d = tmp_path_factory.mktemp("ref") / "u"
    run(["-c", SEED_INI, "-o", d, "--train.steps=600", "--train.checkpoint_every=100"] + FAST, np_=2)
    return d / "checkpoint.h5"


@pytest.mark.parametrize("sig,target", [(signal.SIGTERM, "rank"), (signal.SIGINT, "rank"), (signal.SIGUSR1, "mpirun")])
def test_signal_checkpoints_and_resumes_to_the_same_end(uninterrupted, tmp_path, sig, target):
    d = tmp_path / "run"
    args = ["-c", SEED_INI, "-o", d, "--train.steps=600", "--train.checkpoint_every=100"] + FAST
    proc = _start(args)
    _wait_for_line(proc, "step 100/600")
    pids = [proc.pid] if target == "mpirun" else _rank_pids(d)[-1:]
    assert pids, "no rank process found"
    os.kill(pids[0], sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, f"exit {proc.returncode}\n{out}\n{err}"
    assert "stopped by a signal at step" in out
    stopped = _step(d / "checkpoint.h5")
    assert 100 <= stopped < 600
    r = run(args, np_=2)
    assert f"resuming {d}/checkpoint.h5 at step {stopped}" in r.stdout
    assert _step(d / "checkpoint.h5") == 600
    _same_params(d / "checkpoint.h5", uninterrupted)
    s, _ = history(d / "checkpoint.h5")
    su, _ = history(uninterrupted)
    assert set(su) <= set(s), "the resumed history lacks recorded steps"


def test_kill9_of_one_rank_ends_the_job_and_the_checkpoint_resumes(uninterrupted, tmp_path):
    d = tmp_path / "run"
    args = ["-c", SEED_INI, "-o", d, "--train.steps=600", "--train.checkpoint_every=100"] + FAST
    proc = _start(args)
    _wait_for_line(proc, "step 250/600")
    os.kill(_rank_pids(d)[0], signal.SIGKILL)
    proc.communicate(timeout=60)  # no hang: the surviving rank is ended too
    assert proc.returncode != 0
    assert not _rank_pids(d), "a rank survived its peer's death"
    assert _step(d / "checkpoint.h5") in (200, 300)
    run(args, np_=2)
    _same_params(d / "checkpoint.h5", uninterrupted)


def test_crash_between_temporary_write_and_rename_keeps_the_previous_checkpoint(uninterrupted, tmp_path):
    d = tmp_path / "run"
    args = ["-c", SEED_INI, "-o", d, "--train.steps=600", "--train.checkpoint_every=100"] + FAST
    proc = _start(args, env={"FM_TEST_FAULT": "crash_in_checkpoint=300"})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert _step(d / "checkpoint.h5") == 200, "the previous complete checkpoint must stay"
    assert (d / "checkpoint.h5.tmp").exists(), "the fault must hit after the temporary file was written"
    r = run(args, np_=2)
    assert "at step 200" in r.stdout
    _same_params(d / "checkpoint.h5", uninterrupted)


def test_nan_stops_without_touching_the_last_good_checkpoint(tmp_path):
    d = tmp_path / "run"
    args = ["-c", SEED_INI, "-o", d, "--train.steps=300", "--train.checkpoint_every=100"] + FAST
    env = dict(os.environ, FM_TEST_FAULT="nan_at_step=150")
    r = subprocess.run([FMTRAIN] + [str(a) for a in args], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("fmtrain: error: non-finite gradient at step 150")
    assert r.stderr.count("\n") == 1
    assert _step(d / "checkpoint.h5") == 100
    with h5py.File(d / "checkpoint.h5") as f:
        assert all(np.all(np.isfinite(f[f"model/layer_{k}/weight"][()])) for k in range(3))


def test_keep_checkpoints_keeps_the_last_k_and_the_final(tmp_path):
    d = tmp_path / "run"
    run(["-c", SEED_INI, "-o", d, "--train.steps=550", "--train.checkpoint_every=100", "--train.keep_checkpoints=2"] + FAST)
    kept = sorted(p.name for p in d.glob("checkpoint_*.h5"))
    assert kept == ["checkpoint_000000400.h5", "checkpoint_000000500.h5", "checkpoint_000000550.h5"]
    assert _step(d / "checkpoint_000000400.h5") == 400
    _same_params(d / "checkpoint_000000550.h5", d / "checkpoint.h5")


def test_resume_on_another_rank_count(tmp_path):
    common = ["-c", SEED_INI, "--train.checkpoint_every=0"] + FAST
    run(common + ["-o", tmp_path / "r", "--train.steps=30"], np_=1)
    r = run(common + ["-o", tmp_path / "r", "--train.steps=60", "--train.log_every=30"], np_=2)
    assert "changed: train.steps (30 -> 60)" in r.stdout
    run(common + ["-o", tmp_path / "u", "--train.steps=60"], np_=1)
    assert_close_rel(history(tmp_path / "r/checkpoint.h5")[1], history(tmp_path / "u/checkpoint.h5")[1], 1e-4, "loss")
    pr, pu = params(tmp_path / "r/checkpoint.h5"), params(tmp_path / "u/checkpoint.h5")
    for k in pu:
        assert_close_rel(pr[k], pu[k], 1e-4, k)


# ---- bad files and disks: one line, non-zero exit, the output directory unchanged ----

@pytest.fixture
def small_run(tmp_path):
    d = tmp_path / "run"
    run(["-c", SEED_INI, "-o", d, "--train.steps=10", "--model.hidden=32,8"] + FAST)
    return d


def test_truncated_checkpoint_is_refused(small_run):
    ck = small_run / "checkpoint.h5"
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    why = "checkpoint.h5 is not an HDF5 file (or is truncated): expected an fm checkpoint"
    assert_refused(["-c", SEED_INI, "-o", small_run, "--train.steps=20", "--model.hidden=32,8"], small_run, why)
    assert_refused(["sample", "--checkpoint", ck, "-o", small_run / "s.h5"], small_run, why)


def test_corrupt_checkpoint_is_refused(small_run):
    ck = small_run / "checkpoint.h5"
    data = bytearray(ck.read_bytes())
    for i in range(0, len(data), 512):  # every 512th byte flipped, metadata included
        data[i] ^= 0xFF
    ck.write_bytes(bytes(data))
    assert_refused(["-c", SEED_INI, "-o", small_run, "--train.steps=20", "--model.hidden=32,8"], small_run,
             "checkpoint.h5 is not an HDF5 file (or is truncated): expected an fm checkpoint")


def test_newer_format_version_is_refused(small_run):
    with h5py.File(small_run / "checkpoint.h5", "r+") as f:
        f.attrs["fm_version"] = np.int64(7)
    assert_refused(["-c", SEED_INI, "-o", small_run, "--train.steps=20", "--model.hidden=32,8"], small_run,
             "format version 7", "newer fmtrain")


def test_architecture_mismatch_on_resume_is_refused(small_run):
    assert_refused(["-c", SEED_INI, "-o", small_run, "--train.steps=20", "--model.hidden=32,8", "--model.activation=tanh"],
             small_run, "model.activation (silu -> tanh)")


def test_slurm_tasks_without_pmi_is_refused(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    assert_refused(["-c", SEED_INI, "-o", d], d, "SLURM started 4 tasks but MPI sees 1 rank", "--mpi=pmix",
             env={"SLURM_STEP_NUM_TASKS": "4"})


def _mount_tmpfs(path, opts):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        skip_unless_required(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): needs root")


def test_read_only_output_directory_is_refused(small_run, tmp_path):
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "size=4m")
    try:
        shutil.copytree(small_run, mnt / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        assert_refused(["-c", SEED_INI, "-o", mnt / "run", "--train.steps=20", "--model.hidden=32,8"], mnt / "run",
                 "not writable", "Read-only file system")
    finally:
        subprocess.run(["umount", str(mnt)])


def test_disk_full_during_checkpoint_keeps_the_previous_one(small_run, tmp_path):
    size = (small_run / "checkpoint.h5").stat().st_size
    mnt = tmp_path / "small"
    # Room for the checkpoint that is there, not for a second one beside it.
    _mount_tmpfs(mnt, f"size={(size * 3 // 2) // 4096 * 4096 + 4096}")
    try:
        d = mnt / "run"
        d.mkdir()
        shutil.copy(small_run / "checkpoint.h5", d / "checkpoint.h5")
        before = tree_digest(d, skip=("history.tsv",))
        r = subprocess.run([FMTRAIN, "-c", SEED_INI, "-o", str(d), "--train.steps=20", "--model.hidden=32,8"] + FAST,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1
        errs = [l for l in r.stderr.splitlines() if l.startswith("fmtrain: error:")]
        assert len(errs) == 1 and "writing checkpoint" in errs[0] and "previous checkpoint is untouched" in errs[0], r.stderr
        assert tree_digest(d, skip=("history.tsv",)) == before, "the previous checkpoint changed or a temporary file stayed"
        assert _step(d / "checkpoint.h5") == 10
        assert (d / "history.tsv").read_text().rstrip().endswith("# end: failed step 20")
    finally:
        subprocess.run(["umount", str(mnt)])


def test_second_sigint_ends_at_once(tmp_path):
    """The first Ctrl-C asks for a checkpoint at the step boundary; a second one does not wait."""
    d = tmp_path / "run"
    # Slow steps (a wide model, a large batch) so that both signals land inside one step.
    args = [FMTRAIN, "-c", SEED_INI, "-o", str(d), "--train.steps=1000", "--model.hidden=1024,1024",
            "--train.batch=2000", "--sample.n=0", "--train.log_every=1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_line(proc, " 2/1000 ")
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130, f"exit {proc.returncode}: the second SIGINT must end at once"
    assert not (d / "checkpoint.h5").exists(), "no checkpoint is written on the way out"
