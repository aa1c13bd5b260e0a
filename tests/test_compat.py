"""Files written before the model interface (fm format 1, tests/fixtures/, made by fmtrain at
commit 8dd2c14 from tests/fixtures/format1.ini) still load, resume and sample, and today's
fmtrain trains the same run: bit for bit where the kernels that made the fixture run (x86-64-v4,
AVX-512), to float rounding with the others (other vector widths and no FMA round otherwise)."""
import shutil

import h5py
import numpy as np

from conftest import SOURCE, run

FIX = SOURCE / "tests" / "fixtures"
INI = FIX / "format1.ini"


def same_kernels():
    """The fixture was made by the x86-64-v4 kernels; `fmtrain --version` names the ones that run."""
    return "kernels x86-64-v4" in run(["--version"]).stdout


def datasets(path, skip=("history/time",)):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) and n not in skip else None)
    return out


NEW = {"history/val_loss"}  # datasets added since format 1: all NaN when never evaluated


def assert_same(got, want, what):
    assert got.keys() - NEW == want.keys() - NEW, f"{what}: datasets {sorted(got)} vs {sorted(want)}"
    for k in NEW & got.keys() - want.keys():
        assert np.all(np.isnan(got[k])), f"{what}: {k}"
        del got[k]
    exact = same_kernels()
    for k in want:
        if exact:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{what}: {k}")
        else:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6, err_msg=f"{what}: {k}")


def test_fresh_run_matches_format1_run(tmp_path):
    run(["-c", INI, "-o", tmp_path, "--sample.n=0"])
    assert_same(datasets(tmp_path / "checkpoint.h5"), datasets(FIX / "format1_step30.h5"), "30 steps")


def test_format1_checkpoint_resumes_to_the_same_run(tmp_path):
    shutil.copy(FIX / "format1_step20.h5", tmp_path / "checkpoint.h5")
    r = run(["-c", INI, "-o", tmp_path, "--sample.n=0", "--resume"])
    assert "resuming" in r.stdout and "at step 20" in r.stdout
    assert_same(datasets(tmp_path / "checkpoint.h5"), datasets(FIX / "format1_step30.h5"), "resumed 20 -> 30")


def test_format1_checkpoint_samples_as_before(tmp_path):
    run(["sample", "--checkpoint", FIX / "format1_step30.h5", "-o", tmp_path / "s.h5"])
    assert_same(datasets(tmp_path / "s.h5"), datasets(FIX / "format1_samples.h5"), "samples")
    r = run(["info", FIX / "format1_step30.h5"])
    assert "model: mlp 3-64-16-2 silu, 1330 parameters in 6 tensors" in r.stdout
