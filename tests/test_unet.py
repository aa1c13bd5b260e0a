"""The U-Net (model.type = unet) as users run it, on a tiny image dataset (8 x 8, two classes):
the same run on 1, 2 and 4 ranks, exact resume, fmtrain's forward against the numpy one of
analysis/fmunet.py, and the inputs it refuses before any work."""
import sys

import h5py
import numpy as np
import pytest

from conftest import SEED_INI, SOURCE, assert_refused, params, run

sys.path.insert(0, str(SOURCE / "analysis"))
import fm_data  # noqa: E402
import fmtools  # noqa: E402

TINY = ["--model.type=unet", "--model.channels=8,16", "--model.res_blocks=1", "--model.groups=4",
        "--model.time_embed=fourier", "--model.t_dim=8", "--model.classes=2", "--model.y_dim=4",
        "--path.schedule=linear", "--train.batch=16", "--train.log_every=4", "--sample.n=0"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Dark and bright 8 x 8 images with noise, labels 0 and 1, 40 held out."""
    rng = np.random.default_rng(0)
    y = np.arange(240) % 2
    x = (np.where(y[:, None, None, None] == 1, 200, 40) + rng.integers(-30, 30, (240, 1, 8, 8))).astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "img.h5"
    fm_data.write(path, x[:200], y[:200], x[200:], y[200:], (0, 255), ["dark", "bright"])
    return path


def _train(images, out, steps, np_=None, extra=()):
    return run(["-c", SEED_INI, "-o", out, "--data.target=file", f"--data.file={images}", f"--train.steps={steps}"]
               + TINY + list(extra), np_=np_)


def test_same_run_on_1_2_4_ranks(images, tmp_path):
    """Microbatches of 3 on one rank, shards of 8 and 4 on 2 and 4: the same parameters to float
    rounding (GroupNorm's statistics are per image, so no batch split changes them)."""
    p1 = None
    for p in (1, 2, 4):
        r = _train(images, tmp_path / f"np{p}", 8, np_=p, extra=["--train.microbatch=3"])
        assert "unet 1x8x8 channels 8,16" in r.stdout, r.stdout
        pp = params(tmp_path / f"np{p}" / "checkpoint.h5")
        if p1 is None:
            p1 = pp
            assert "enc/0/0/c1/weight" in pp and pp["enc/0/0/c1/weight"].shape == (8, 8, 3, 3)
        for k in p1:
            np.testing.assert_allclose(pp[k], p1[k], rtol=1e-4, atol=1e-6, err_msg=f"{k} on {p} ranks")


def test_resume_is_exact(images, tmp_path):
    _train(images, tmp_path / "whole", 10, np_=2)
    _train(images, tmp_path / "parts", 4, np_=2)
    r = _train(images, tmp_path / "parts", 10, np_=2)
    assert "at step 4" in r.stdout
    a, b = params(tmp_path / "whole" / "checkpoint.h5"), params(tmp_path / "parts" / "checkpoint.h5")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_numpy_forward_matches_fmtrain(images, tmp_path):
    """Euler steps of size 1/4 from a trained checkpoint, guided (w = 2.5): each recorded step is
    x + h u(x, t), and the numpy U-Net gives u to 1e-5 of its largest entry; a changed tensor
    does not."""
    _train(images, tmp_path / "t", 20, np_=2)
    ck_path = tmp_path / "t" / "checkpoint.h5"
    run(["sample", "--checkpoint", ck_path, "-o", tmp_path / "s.h5", "--sample.guidance=2.5", "--sample.n=6",
         "--sample.steps=4", "--sample.trajectories=6", "--sample.weights=raw"])
    s = fmtools.load_samples(tmp_path / "s.h5")
    ck = fmtools.load_checkpoint(ck_path)
    traj = s.trajectories.astype(np.float64).reshape(6, 5, -1)
    for k in range(4):
        u = fmtools.velocity(ck, traj[:, k], s.times[k], s.labels, 2.5)
        step = (traj[:, k + 1] - traj[:, k]) / 0.25
        err = np.max(np.abs(step - u)) / np.max(np.abs(u))
        assert err < 1e-5, f"step {k}: numpy U-Net differs from fmtrain's by {err:.3g} of its largest entry"
    ck.params["dec/0/0/c2/bias"] = ck.params["dec/0/0/c2/bias"] + 1e-3
    u = fmtools.velocity(ck, traj[:, 0], s.times[0], s.labels, 2.5)
    assert np.max(np.abs((traj[:, 1] - traj[:, 0]) / 0.25 - u)) / np.max(np.abs(u)) > 1e-4


def test_bad_shapes_refused_before_any_work(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    base = ["-c", SEED_INI, "-o", out, "--data.target=file", f"--data.file={images}"] + TINY
    assert_refused(base + ["--model.channels=8,8,8,8,8"], out, "images of 8x8 cannot be halved 4 times",
                   "divisible by 16")
    assert_refused(base + ["--model.channels=8,10"], out, "groups = 4 does not divide channels c_1 = 10")
    assert_refused(base + ["--model.time_embed=raw"], out, "needs time_embed = fourier")
    assert_refused(["-c", SEED_INI, "-o", out] + TINY[:1] + ["--model.time_embed=fourier"], out, "needs images",
                   "vectors of 2 numbers")
    rng = np.random.default_rng(1)
    fm_data.write(tmp_path / "vec.h5", rng.normal(size=(50, 64)).astype(np.float32), value_range=(-1, 1))
    assert_refused(["-c", SEED_INI, "-o", out, "--data.target=file", f"--data.file={tmp_path / 'vec.h5'}"] + TINY
                   + ["--model.classes=0"], out, "needs images", "vectors of 64 numbers")
    with h5py.File(images) as f:
        assert f["x"].shape == (200, 1, 8, 8)
