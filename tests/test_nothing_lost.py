"""Issue 17: the data-loss and hang paths an adversarial run found, each made a refusal that
names the problem (or a clean stop), and the checksums on everything fmtrain writes."""
import os
import random
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import FMTRAIN, SEED_INI, assert_refused, history, run, skip_unless_required, tree_digest

SMALL = ["--model.hidden=32,8", "--train.batch=64", "--sample.n=0", "--train.log_every=50"]
FM_DIR_MAX = 1024 - 64  # include/fm/config.h
FM_PATH_MAX = 1024


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small run of 60 steps with numbered checkpoints every 20."""
    d = tmp_path_factory.mktemp("trained") / "run"
    run(["-c", SEED_INI, "-o", d, "--train.steps=60", "--train.checkpoint_every=20", "--train.keep_checkpoints=5"]
        + SMALL)
    return d


def _copy(trained, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(trained, d)
    return d


def _long_dir(base, length):
    """A directory path of exactly `length` characters under base, in components of at most 200."""
    left = length - len(str(base))
    k = -(-left // 201)  # components, each "/" and 1 to 200 characters
    parts = ["d" * (left // k - 1 + (i < left % k)) for i in range(k)]
    p = base.joinpath(*parts)
    assert len(str(p)) == length, (len(str(p)), length)
    return p


def _mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        skip_unless_required(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): needs root")


def _error_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("fmtrain: error:")]


# --- data lost or overwritten ---------------------------------------------------------------

def test_an_unreadable_checkpoint_path_is_not_a_fresh_start(trained, tmp_path):
    """access() failing for another reason than 'no such file' (here a symlink loop) must stop the
    run: before, train.resume = auto started from step 0 and overwrote the real checkpoint."""
    d = tmp_path / "loop"
    d.mkdir()
    os.symlink("checkpoint.h5", d / "checkpoint.h5")
    assert_refused(["-c", SEED_INI, "-o", d] + SMALL, d, "cannot tell whether", "checkpoint.h5 exists",
                   "Too many levels of symbolic links")


def test_output_path_lengths_are_checked_up_front(tmp_path):
    """The longest -o (FM_DIR_MAX) trains, resumes and samples; one more character is refused
    before anything is written (before, 1017 characters made the temporary name equal the
    checkpoint's, and 194 or more made checkpoints that could never be read back)."""
    ok = _long_dir(tmp_path, FM_DIR_MAX)
    run(["-c", SEED_INI, "-o", ok, "--train.steps=20", "--train.keep_checkpoints=1"] + SMALL)
    r = run(["-c", SEED_INI, "-o", ok, "--train.steps=30", "--train.keep_checkpoints=1", "--sample.n=5"] + SMALL[:-2],
            np_=2)
    assert "at step 20" in r.stdout and (ok / "samples.h5").exists() and (ok / "checkpoint_000000030.h5").exists()
    too_long = _long_dir(tmp_path / "x", FM_DIR_MAX + 1)
    r = run(["-c", SEED_INI, "-o", too_long] + SMALL, check=False)
    assert r.returncode == 1 and _error_lines(r.stderr) and "allowed: at most 960" in r.stderr
    assert not too_long.exists()
    # fmtrain sample -o: the temporary name (path + ".tmp") must fit
    out_ok = _long_dir(tmp_path / "s", FM_PATH_MAX - 8 - len("/s.h5")) / "s.h5"
    out_ok.parent.mkdir(parents=True)
    run(["sample", "--checkpoint", ok / "checkpoint.h5", "-o", out_ok, "--sample.n=5"])
    assert out_ok.exists()
    out_bad = out_ok.parent / "ss.h5"
    r = run(["sample", "--checkpoint", ok / "checkpoint.h5", "-o", out_bad, "--sample.n=5"], check=False)
    assert r.returncode == 1 and "allowed: at most 1016" in r.stderr and not out_bad.exists()


@pytest.mark.parametrize("cmd", ["sample", "logprob"])
def test_outputs_never_replace_a_file_of_another_kind(trained, tmp_path, cmd):
    d = _copy(trained, tmp_path)
    assert_refused([cmd, "--checkpoint", d / "checkpoint.h5", "-o", d / "checkpoint.h5", "--sample.n=5"], d,
                   "is an fm checkpoint file", f"fmtrain writes over its own {cmd.replace('sample', 'samples')} files only")
    (d / "notes.txt").write_text("mine")
    assert_refused([cmd, "--checkpoint", d / "checkpoint.h5", "-o", d / "notes.txt", "--sample.n=5"], d,
                   "notes.txt is not an HDF5 file")
    # its own kind is replaced
    run([cmd, "--checkpoint", d / "checkpoint.h5", "-o", d / "mine.h5", "--sample.n=5"])
    run([cmd, "--checkpoint", d / "checkpoint.h5", "-o", d / "mine.h5", "--sample.n=7"])
    with h5py.File(d / "mine.h5") as f:
        assert f["nfe"].shape == (7,)


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    d = tmp_path / "run"
    first = subprocess.Popen([FMTRAIN, "-c", SEED_INI, "-o", str(d), "--train.steps=100000", "--train.progress=plain",
                              "--train.log_every=100"] + SMALL[:-1], stdout=subprocess.PIPE, text=True)
    try:
        for line in first.stdout:
            if line.startswith("step "):
                break
        r = run(["-c", SEED_INI, "-o", d] + SMALL, check=False, timeout=60)
        assert r.returncode == 1
        assert "is in use by another fmtrain run" in _error_lines(r.stderr)[0]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 75


# --- hangs and crashes ---------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["sample", "logprob"])
@pytest.mark.parametrize("np_", [1, 2])
def test_a_full_disk_while_writing_samples_ends_cleanly(trained, tmp_path, np_, cmd):
    """Before: a segfault after the error on 1 rank, every rank hanging on 2 (and, with chunked
    datasets, parallel HDF5 deadlocked inside H5Dcreate). Now rank 0 writes the gathered rows
    with plain POSIX calls: one error line, no crash, no temporary file, on every rank count."""
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "300k")
    try:
        r = subprocess.run(["mpirun", "-np", str(np_), FMTRAIN, cmd, "--checkpoint", str(trained / "checkpoint.h5"),
                            "-o", str(mnt / "s.h5"), "--sample.n=30000"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, r.stderr
        errs = _error_lines(r.stderr)
        assert len(errs) == 1 and "No space left on device" in errs[0] and "nothing was replaced" in errs[0], r.stderr
        assert "Segmentation" not in r.stderr and "signal" not in r.stderr, r.stderr
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)])


def test_fifos_are_refused_not_waited_on(trained, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    d = tmp_path / "out"
    for args, frag in [(["-c", fifo, "-o", d], "config file"), (["sample", "--checkpoint", fifo], "checkpoint"),
                       (["-c", SEED_INI, "-o", d, "--data.target=file", f"--data.file={fifo}"], "dataset")]:
        r = run(args, check=False, timeout=30)
        assert r.returncode == 1 and f"{frag} {fifo} is a FIFO: allowed: a regular file" in r.stderr, r.stderr


def test_threads_over_the_cores_are_refused(tmp_path):
    cores = os.cpu_count()
    assert_refused(["-c", SEED_INI, "-o", tmp_path / "t", f"--train.threads={cores + 1}"], tmp_path,
                   f"threads = {cores + 1}", f"at most the cores of a node ({cores} here)")


def test_a_history_longer_than_its_file_is_refused_before_allocating(trained, tmp_path):
    """A crafted checkpoint whose history declares 2e8 rows (unallocated chunks: a small file)
    made fmtrain sample allocate and fill 5.5 GB."""
    d = _copy(trained, tmp_path)
    with h5py.File(d / "checkpoint.h5", "a") as f:
        for name, dt in [("step", "i8"), ("loss", "f4"), ("lr", "f4"), ("grad_norm", "f4"), ("time", "f8"),
                         ("val_loss", "f4")]:
            del f[f"history/{name}"]
            f.create_dataset(f"history/{name}", shape=(200_000_000,), dtype=dt, chunks=(1 << 20,))
    assert (d / "checkpoint.h5").stat().st_size < 1e6
    t0 = time.time()
    assert_refused(["sample", "--checkpoint", d / "checkpoint.h5", "-o", d / "s.h5"], d,
                   "/history declares 200000000 rows, more than its", "the file is corrupt")
    assert time.time() - t0 < 20


def test_memory_a_run_cannot_have_is_refused_before_it_is_allocated(tmp_path):
    """A mixture of 100,000 modes in 16,777,216 dimensions: a petabyte of means."""
    assert_refused(["-c", SEED_INI, "-o", tmp_path / "m", "--data.target=gmm_random", "--data.dim=16777216",
                    "--data.modes=100000"], tmp_path, "the run needs about", "target", "allowed: at most 80%")


def test_the_memory_of_a_large_run_is_said(tmp_path):
    r = run(["-c", SEED_INI, "-o", tmp_path / "m", "--data.target=gmm_random", "--data.dim=1024",
             "--data.modes=20000", "--train.steps=1"] + SMALL)
    line = next(l for l in r.stdout.splitlines() if l.startswith("memory:"))
    assert "target 164 MB" in line and "each checkpoint about" in line, line


# --- signals -------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sample_stops_on_a_signal_and_writes_nothing(trained, tmp_path, sig):
    out = tmp_path / "s.h5"
    p = subprocess.Popen([FMTRAIN, "sample", "--checkpoint", str(trained / "checkpoint.h5"), "-o", str(out),
                          "--sample.n=3000000", "--sample.trajectories=0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    p.send_signal(sig)
    t0 = time.time()
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 75, stderr
    assert time.time() - t0 < 8, "sampling went on after the signal (the whole run takes about 30 s)"
    assert "stopped by a signal before" in stdout and not out.exists() and not (tmp_path / "s.h5.tmp").exists()


def test_sigusr1_to_mpirun_reaches_the_caller_as_75(trained, tmp_path):
    """mpirun forwards SIGUSR1 to the ranks and returns their status; SIGTERM to mpirun stops the
    ranks cleanly too but mpirun itself then exits 1 (README: which signal to send)."""
    p = subprocess.Popen(["mpirun", "-np", "2", FMTRAIN, "-c", SEED_INI, "-o", str(tmp_path / "r"),
                          "--train.steps=1000000", "--train.progress=plain"] + SMALL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("step "):
            break
    p.send_signal(signal.SIGUSR1)
    p.communicate(timeout=60)
    assert p.returncode == 75


# --- smaller -------------------------------------------------------------------------------

def test_history_tsv_loses_no_rows_to_a_disk_full_for_a_few_seconds(tmp_path):
    """The disk fills for 2.5 s while the run records every step; then SIGTERM (so the test takes
    the same time at any speed, sanitizers included): history.tsv has every row the checkpoint has."""
    mnt = tmp_path / "disk"
    _mount_tmpfs(mnt, "8m")
    try:
        d = mnt / "run"
        # a small model, a row every 10 steps: kilobytes a second under the sanitizers, about 300 KB
        # a second in a release build (rows must cross tmpfs pages while the disk is full)
        p = subprocess.Popen([FMTRAIN, "-c", SEED_INI, "-o", str(d), "--train.steps=1000000", "--train.checkpoint_every=0",
                              "--train.history_every=10", "--train.progress=plain"] + SMALL[:3],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        filler = mnt / "filler"
        with open(filler, "wb", buffering=0) as f:  # fill the disk to its last byte
            for size in (65536, 4096, 1):
                try:
                    while True:
                        f.write(b"\0" * size)
                except OSError:
                    pass
        time.sleep(2.5)
        filler.unlink()
        time.sleep(1.5)
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 75, stderr
        assert "writing history.tsv failed (No space left on device)" in stderr
        rows = [l for l in (d / "history.tsv").read_text().splitlines() if l and l[0].isdigit()]
        steps, _ = history(d / "checkpoint.h5")
        assert len(steps) > 100
        assert [int(r.split("\t")[0]) for r in rows] == list(steps), "history.tsv differs from the checkpoint's history"
    finally:
        subprocess.run(["umount", str(mnt)])


def test_the_nan_stop_names_the_step_the_checkpoint_holds(tmp_path):
    d = tmp_path / "run"
    r = run(["-c", SEED_INI, "-o", d, "--train.steps=300", "--train.checkpoint_every=100"] + SMALL, check=False,
            env={"FM_TEST_FAULT": "nan_at_step=150"})
    assert r.returncode == 1 and "non-finite gradient at step 150" in r.stderr
    assert "checkpoint.h5 keeps step 100" in r.stderr, r.stderr
    r = run(["-c", SEED_INI, "-o", tmp_path / "r2", "--train.steps=300", "--train.checkpoint_every=100"] + SMALL,
            check=False, env={"FM_TEST_FAULT": "nan_at_step=50"})
    assert "no checkpoint was written" in r.stderr, r.stderr


# --- checksums -----------------------------------------------------------------------------

def _data_spans(path):
    """(dataset, byte offset, bytes) of every stored chunk's data (its checksum excluded)."""
    spans = []
    with h5py.File(path, "r") as f:
        def visit(name, o):
            if isinstance(o, h5py.Dataset) and o.chunks:
                for i in range(o.id.get_num_chunks()):
                    c = o.id.get_chunk_info(i)
                    spans.append((name, c.byte_offset, c.size - 4))
        f.visititems(visit)
    return spans


def test_every_dataset_carries_a_checksum(trained, tmp_path):
    r = run(["sample", "--checkpoint", trained / "checkpoint.h5", "-o", tmp_path / "s.h5", "--sample.n=50"])
    for path in (trained / "checkpoint.h5", tmp_path / "s.h5"):
        with h5py.File(path, "r") as f:
            arrays = []
            f.visititems(lambda n, o: arrays.append(o) if isinstance(o, h5py.Dataset) and o.shape != () else None)
            assert arrays and all(o.fletcher32 for o in arrays), [o.name for o in arrays if not o.fletcher32]
        info = run(["info", path]).stdout
        assert "every dataset reads back" in info


def test_a_flipped_bit_in_any_data_is_refused(trained, tmp_path):
    """Random single-bit flips inside the stored data of a checkpoint: info, sample and resume
    all refuse the file, naming the dataset (before: accepted, the run went on)."""
    spans = _data_spans(trained / "checkpoint.h5")
    clean = (trained / "checkpoint.h5").read_bytes()
    rng = random.Random(17)
    for trial in range(30):
        name, off, size = rng.choice(spans)
        b = bytearray(clean)
        b[off + rng.randrange(size)] ^= 1 << rng.randrange(8)
        d = tmp_path / f"t{trial}"
        d.mkdir()
        (d / "checkpoint.h5").write_bytes(bytes(b))
        r = run(["info", d / "checkpoint.h5"], check=False)
        assert r.returncode == 1 and f"/{name}" in r.stderr and "corrupt" in r.stderr, (name, r.stderr)
        r = run(["sample", "--checkpoint", d / "checkpoint.h5", "--sample.n=5"], check=False)
        assert r.returncode == 1 and "checksum" in r.stderr and "corrupt" in r.stderr, (name, r.stderr)
        if trial < 5:
            r = run(["-c", SEED_INI, "-o", d, "--train.steps=80"] + SMALL, check=False)
            assert r.returncode == 1 and "checksum" in r.stderr and "corrupt" in r.stderr, (name, r.stderr)


def test_a_corrupt_checkpoint_names_the_newest_numbered_one_that_verifies(trained, tmp_path):
    """checkpoint.h5 and the newest numbered copy (step 60) corrupt: the refusal names step 40."""
    d = _copy(trained, tmp_path)
    name, off, size = _data_spans(d / "checkpoint.h5")[0]
    b = bytearray((d / "checkpoint.h5").read_bytes())
    b[off] ^= 4
    for f in ("checkpoint.h5", "checkpoint_000000060.h5"):
        (d / f).write_bytes(bytes(b))
    assert_refused(["-c", SEED_INI, "-o", d, "--train.steps=80"] + SMALL, d, "checksum",
                   "checkpoint_000000040.h5 (step 40) reads back whole: copy it over")
    shutil.copy(d / "checkpoint_000000040.h5", d / "checkpoint.h5")
    r = run(["-c", SEED_INI, "-o", d, "--train.steps=80"] + SMALL)
    assert "at step 40" in r.stdout
