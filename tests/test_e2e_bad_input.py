"""Every bad input: one clear line on stderr, a non-zero exit, nothing created or changed."""
import shutil

import h5py
import numpy as np
import pytest

from conftest import SEED_INI, assert_refused, run

GOOD = open(SEED_INI).read()


def _write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def outdir(seed_runs, tmp_path):
    """An output directory holding an earlier run's checkpoint and samples."""
    d = tmp_path / "out"
    shutil.copytree(seed_runs[1], d)
    return d


def test_missing_config(outdir):
    assert_refused(["-c", outdir / "nope.ini", "-o", outdir], outdir, "cannot read config file", "nope.ini")


@pytest.mark.parametrize("text,frags", [
    ("[trian]\nsteps = 3\n", ["unknown section [trian]", "allowed: data, path, model"]),
    ("[train]\nstepz = 3\n", ["unknown key 'stepz' in [train]", "allowed: steps, batch"]),
    ("[train]\nsteps = ten\n", ["steps = 'ten'", "allowed: an integer"]),
    ("[optim]\nlr = 1e-3x\n", ["lr = '1e-3x'", "allowed: a number"]),
    ("[train]\nsteps = 0\n", ["steps = '0'", "from 1 to"]),
    ("[train]\nsteps = -10\n", ["steps = '-10'", "from 1 to"]),
    ("[train]\nbatch = 0\n", ["batch = '0'", "from 1 to"]),
    ("[train]\nbatch = -1\n", ["batch = '-1'", "from 1 to"]),
    ("[model]\nhidden = 1024;16\n", ["hidden", "comma-separated integers"]),
    ("[model]\nhidden = 1024,,16\n", ["hidden = '1024,,16'", "comma-separated integers"]),
    ("[model]\nhidden = 1024,x\n", ["hidden = '1024,x'", "comma-separated integers"]),
])
def test_bad_config_file(outdir, tmp_path, text, frags):
    ini = _write(tmp_path / "bad.ini", GOOD + "\n" + text)
    assert_refused(["-c", ini, "-o", outdir], outdir, "bad.ini:", *frags)


def test_bad_config_creates_no_output_dir(tmp_path):
    ini = _write(tmp_path / "bad.ini", "[train]\nsteps = 0\n")
    r = run(["-c", ini, "-o", tmp_path / "new"], check=False)
    assert r.returncode != 0 and not (tmp_path / "new").exists()


@pytest.mark.parametrize("override,frags", [
    ("--train.steps=abc", ["--train.steps=abc", "integer"]),
    ("--train.batch=0", ["--train.batch=0", "from 1 to"]),
    ("--model.hidden=16,", ["--model.hidden=16,", "comma-separated"]),
    ("--nosuch.key=1", ["unknown section [nosuch]"]),
    ("--train.nosuch=1", ["unknown key 'nosuch' in [train]"]),
    ("--sample.solver=rk45", ["solver = 'rk45'", "allowed: euler midpoint heun rk4 dopri5"]),
    ("--sample.atol=0", ["--sample.atol=0", "from 1e-09 to 1"]),
    ("--sample.rtol=1e-8", ["--sample.rtol=1e-8", "from 1e-06 to 1"]),
    ("--sample.divergence=fast", ["divergence = 'fast'", "allowed: auto exact hutchinson"]),
    ("--train.coupling=sinkhorn", ["coupling = 'sinkhorn'", "allowed: independent ot"]),
    ("--train.t_dist=beta", ["t_dist = 'beta'", "allowed: uniform logit_normal"]),
    ("--train.t_std=0", ["--train.t_std=0", "from 0.001 to 10"]),
    ("--train.t_mean=x", ["--train.t_mean=x", "a number"]),
    ("--train.batch=20000 --train.coupling=ot", ["coupling = ot with batch = 20000", "batch up to 16384"]),
    ("--data.dim=3", ["dim = 3 with target = gmm_ring"]),
])
def test_bad_override(outdir, override, frags):
    assert_refused(["-c", SEED_INI, "-o", outdir, *override.split()], outdir, *frags)


def test_bad_input_under_mpirun_ends_every_rank(outdir):
    assert_refused(["-c", SEED_INI, "-o", outdir, "--train.steps=0"], outdir, "from 1 to", np_=3)


def test_sample_from_a_file_that_is_not_hdf5(outdir):
    junk = _write(outdir / "junk.h5", "not hdf5 at all\n")
    assert_refused(["sample", "--checkpoint", junk, "-o", outdir / "s.h5"], outdir, "not an HDF5 file")


def test_sample_from_an_hdf5_file_that_is_not_fm(outdir, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    assert_refused(["sample", "--checkpoint", other, "-o", outdir / "s.h5"], outdir, "not fm's")


def test_sample_from_a_samples_file(outdir):
    assert_refused(["sample", "--checkpoint", outdir / "samples.h5", "-o", outdir / "s.h5"], outdir,
                   "is an fm samples file", "expected an fm checkpoint")


def test_resume_from_a_checkpoint_that_is_not_fm(outdir):
    ckpt = outdir / "checkpoint.h5"
    ckpt.unlink()
    with h5py.File(ckpt, "w") as f:
        f["model"] = np.zeros(3)
    assert_refused(["-c", SEED_INI, "-o", outdir], outdir, "not fm's")


def test_resume_that_changes_the_model(outdir):
    assert_refused(["-c", SEED_INI, "-o", outdir, "--model.hidden=64,16"], outdir, "model.hidden (1024,16 -> 64,16)")


def test_resume_never_refuses_an_existing_checkpoint(outdir):
    assert_refused(["-c", SEED_INI, "-o", outdir, "--train.resume=never"], outdir, "exists", "train.resume = never")


def test_resume_flag_without_checkpoint(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    assert_refused(["-c", SEED_INI, "-o", d, "--resume"], d, "nothing to resume")


def test_unknown_argument(outdir):
    assert_refused(["-c", SEED_INI, "-o", outdir, "--frobnicate"], outdir, "unexpected argument '--frobnicate'")
