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
    assert_refused(["-c", outdir / "nope.ini", "-o", outdir], outdir, "cannot open config file", "nope.ini")


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
    # what the INI library used to read silently otherwise (issue 17)
    ("[train]\nsteps = 20\n  100\n", ["bad.ini:3:", "'100' is not", "continuation lines are not supported"]),
    ("[train]\nsteps = 20\nbatch = 8\nsteps = 30\n", ["bad.ini:4:", "steps is set twice (first on line 2)"]),
    ("[train]\nst\x01eps = 20\n", ["bad.ini:2:", "unknown key 'st\\x01eps'"]),
    ("[train]\nst\reps = 20\n", ["bad.ini:2:", "unknown key 'st\\x0deps'"]),
    ("; " + "x" * 300 + "\n[train]\nsteps = 0\n", ["bad.ini:3:", "steps = '0'"]),
    ("[train]\nsteps = " + "9" * 300 + "\n", ["bad.ini:2:", "steps = '999", "allowed: an integer"]),
])
def test_bad_config_file(outdir, tmp_path, text, frags):
    ini = _write(tmp_path / "bad.ini", text)
    assert_refused(["-c", ini, "-o", outdir], outdir, *frags)


def test_config_with_a_nul_byte_is_refused(outdir, tmp_path):
    """inih stopped at the NUL: the rest of the file was ignored and 5000 default steps ran."""
    ini = tmp_path / "nul.ini"
    ini.write_bytes(b"\0" + GOOD.encode())
    assert_refused(["-c", ini, "-o", outdir], outdir, "nul.ini has a NUL byte at offset 0")


def test_long_lines_and_paths_are_read_whole(tmp_path):
    """A comment of 300 characters and an output path over 200 (split by inih's 200-byte line
    buffer: the stored config then read back as corrupt) train, resume and sample."""
    d = tmp_path / ("a" * 200) / ("b" * 200)
    ini = _write(tmp_path / "long.ini", "; " + "c" * 300 + "\n" + GOOD)
    run(["-c", ini, "-o", d, "--train.steps=20", "--sample.n=0"])
    r = run(["-c", ini, "-o", d, "--train.steps=30", "--sample.n=0"])
    assert "resuming" in r.stdout and "at step 20" in r.stdout
    r = run(["sample", "--checkpoint", d / "checkpoint.h5", "--sample.n=10"])
    assert (d / "samples.h5").exists()


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


@pytest.mark.parametrize("np_", [None, 2])
def test_bad_isa(outdir, np_):
    """FM_ISA names the kernels' build (include/fm/isa.h): a word that is none, refused before any
    work, with the allowed names, on one rank or two (one line, no hang)."""
    line = assert_refused(["-c", SEED_INI, "-o", outdir], outdir, "FM_ISA = 'avx3'",
                          "allowed: baseline, x86-64-v3, x86-64-v4", np_=np_, env={"FM_ISA": "avx3"})
    assert "[rank" not in line  # every rank knows it alike: said once, by rank 0, at the start
    fresh = outdir.parent / "never"
    r = run(["-c", SEED_INI, "-o", fresh], np_=np_, check=False, env={"FM_ISA": "avx3"})
    assert r.returncode != 0 and not fresh.exists(), "refused only after creating the output directory"


def test_isa_the_cpu_lacks(outdir):
    """A build this CPU cannot run is refused with the ones it can (on an AVX2 machine,
    x86-64-v4; on an AVX-512 one nothing is missing, and the run takes the forced build)."""
    v = run(["--version"], env={"FM_ISA": ""}).stdout  # empty: the CPU's widest, whatever the caller set
    if "kernels x86-64-v4" in v:
        r = run(["--version"], env={"FM_ISA": "x86-64-v3"})
        assert "kernels x86-64-v3" in r.stdout
    else:
        assert_refused(["-c", SEED_INI, "-o", outdir], outdir, "FM_ISA = 'x86-64-v4'", "this CPU cannot run it",
                       "allowed here: baseline", env={"FM_ISA": "x86-64-v4"})
