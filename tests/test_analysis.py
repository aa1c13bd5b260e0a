"""The analysis tools: loader, numpy model, metrics, report (Debian's h5py, numpy, matplotlib)."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import SEED_INI, SOURCE, run

sys.path.insert(0, str(SOURCE / "analysis"))
import fmtools  # noqa: E402

ANALYZE = str(SOURCE / "analysis" / "fm_analyze.py")


def test_numpy_forward_matches_fmtrain(seed_runs):
    """Every recorded Euler step is x_{k+1} = x_k + h u_theta(x_k, t_k): the numpy model from the
    checkpoint's weights reproduces the steps fmtrain took."""
    ck = fmtools.load_checkpoint(seed_runs[1] / "checkpoint.h5")
    s = fmtools.load_samples(seed_runs[1] / "samples.h5")
    traj, times = s.trajectories.astype(np.float64), s.times
    h = 1.0 / (len(times) - 1)
    worst = 0.0
    for k in range(len(times) - 1):
        u = fmtools.velocity(ck, traj[:, k], times[k])
        step = (traj[:, k + 1] - traj[:, k]) / h
        worst = max(worst, np.max(np.abs(step - u) / (1 + np.abs(u))))
    assert worst < 2e-3, f"numpy velocity differs from fmtrain's steps by {worst:.3g}"
    # ...and a wrong model (another layer's bias changed) would not.
    ck.params["layer_2/bias"] = ck.params["layer_2/bias"] + 0.1
    u = fmtools.velocity(ck, traj[:, 0], times[0])
    assert np.max(np.abs((traj[:, 1] - traj[:, 0]) / h - u)) > 0.05


def test_stored_means_are_the_ring(seed_runs):
    ck = fmtools.load_checkpoint(seed_runs[1] / "checkpoint.h5")
    stored = fmtools.target_of(ck)
    rebuilt = fmtools.target_of(ck.config)
    np.testing.assert_allclose(stored.means, rebuilt.means, atol=1e-5)
    assert stored.std == rebuilt.std == 1.0 and len(stored.means) == 11


def test_logpdf_is_a_density():
    ring = fmtools.target_of(fmtools.read_config("[data]\ntarget=gmm_ring\nmodes=11\nradius=10\nstd=1\nx_offset=0\n"))
    g = np.linspace(-16, 16, 321)
    xx, yy = np.meshgrid(g, g)
    p = np.exp(ring.logpdf(np.stack([xx.ravel(), yy.ravel()], 1)))
    assert abs(p.sum() * (g[1] - g[0]) ** 2 - 1) < 1e-3
    far = ring.logpdf(np.array([[500.0, 0.0]]))[0]
    assert np.isfinite(far) and abs(far - (-0.5 * 490 ** 2 - np.log(11) - np.log(2 * np.pi))) < 1e-6


def test_metrics_of_true_and_of_collapsed_samples():
    ring = fmtools.target_of(fmtools.read_config("[data]\ntarget=gmm_ring\nmodes=11\nradius=10\nstd=1\nx_offset=0\n"))
    rng = np.random.default_rng(5)
    m = fmtools.metrics(ring.sample(5000, rng), ring, seed=1)
    assert m["modes_covered"] == 11 and m["kl_modes"] < 0.01 and m["energy_distance"] < 0.01
    assert 0.985 < m["within_3std"] < 0.997
    assert abs(m["mean_logpdf"] - (-5.24)) < 0.06  # -(log 11 + log(2 pi e)) for well-separated modes
    # Mode collapse onto 5 modes: the histogram KL is log(11/5), six modes are missing.
    bad = fmtools.Mixture(ring.means[:5], 1.0).sample(5000, rng)
    mb = fmtools.metrics(bad, ring, seed=1)
    assert mb["modes_covered"] == 5
    assert abs(mb["kl_modes"] - np.log(11 / 5)) < 0.02
    assert mb["energy_distance"] > 1.0
    # Blurred samples: fewer within 3 std, lower log-density.
    blur = ring.sample(5000, rng) + 2.0 * rng.standard_normal((5000, 2))
    mbl = fmtools.metrics(blur, ring, seed=1)
    assert mbl["within_3std"] < 0.9 and mbl["mean_logpdf"] < m["mean_logpdf"] - 0.5


def test_energy_distance_against_direct_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 2)), rng.normal(1.0, 1.0, size=(40, 2))
    d = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).mean()  # noqa: E731
    direct = 2 * d(x, y) - d(x, x) - d(y, y)
    assert abs(fmtools.energy_distance(x, y, chunk=7) - direct) < 1e-9


def test_running_mean():
    y = np.arange(10.0)
    r = fmtools.running_mean(y, 3)
    np.testing.assert_allclose(r, [0, 0.5, 1, 2, 3, 4, 5, 6, 7, 8])


def test_report_writes_metrics_and_figures(seed_runs, tmp_path):
    import shutil
    d = tmp_path / "run"
    shutil.copytree(seed_runs[1], d)
    r = subprocess.run([sys.executable, ANALYZE, "report", str(d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "energy distance" in r.stdout and "true samples" in r.stdout
    m = json.loads((d / "metrics.json").read_text())
    assert m["checkpoint_step"] == 30 and m["fmtrain"]["n"] == 300 and m["true_samples"]["modes_covered"] == 11
    for name in ("densities", "samples_over_time", "trajectories", "loss"):
        png = d / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_loader_refuses_other_files(seed_runs, tmp_path):
    with pytest.raises(ValueError, match="expected an fm checkpoint"):
        fmtools.load_checkpoint(seed_runs[1] / "samples.h5")
    other = tmp_path / "x.h5"
    with h5py.File(other, "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="not an fm file"):
        fmtools.load_samples(other)
    r = subprocess.run([sys.executable, ANALYZE, "report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("fm_analyze: error:") and r.stderr.count("\n") == 1


def test_help():
    r = subprocess.run([sys.executable, ANALYZE, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "report" in r.stdout


def test_follow_a_running_training(tmp_path):
    """history.tsv is readable while training runs, and `follow` redraws until the run ends."""
    from conftest import FMTRAIN, SEED_INI
    d = tmp_path / "live"
    train = subprocess.Popen([FMTRAIN, "-c", SEED_INI, "-o", str(d), "--train.steps=2000", "--sample.n=0",
                              "--train.log_every=1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fol = subprocess.Popen([sys.executable, ANALYZE, "follow", str(d), "--every", "0.3", "--timeout", "600"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Mid-run: rows are there, the end marker is not.
    import time
    t0 = time.time()
    while True:
        p = d / "history.tsv"
        if p.exists():
            hist, end = fmtools.load_history(p)
            if len(hist.get("step", [])) > 150:
                break
        assert time.time() - t0 < 300 and train.poll() is None, "no history while training"
        time.sleep(0.1)
    assert end is None and hist["step"][-1] < 2000
    out, err = fol.communicate(timeout=600)
    assert train.wait(timeout=600) == 0
    assert fol.returncode == 0, err
    updates = [l for l in out.splitlines() if l.startswith("step ")]
    assert len(updates) >= 2 and out.splitlines()[-1].startswith("run done")
    assert (d / "figures" / "loss_live.png").stat().st_size > 5000
    final, end = fmtools.load_history(d / "history.tsv")
    ck = fmtools.load_checkpoint(d / "checkpoint.h5")
    assert end == "done"
    np.testing.assert_array_equal(final["step"], ck.history["step"])
    np.testing.assert_allclose(final["loss"], ck.history["loss"], rtol=1e-7)


def test_history_file_of_a_resumed_run_matches_its_checkpoint(seed_runs, tmp_path):
    import shutil
    from conftest import run, SEED_INI
    d = tmp_path / "r"
    shutil.copytree(seed_runs[1], d)
    # A crashed run may have recorded rows past its last checkpoint: they must go.
    with open(d / "history.tsv", "a") as f:
        f.write("31\t1.0\t0.001\t1.0\t9.0\n32\t1.0\t0.001\t1.0\t9.0\n")
    run(["-c", SEED_INI, "-o", d, "--train.steps=40", "--sample.n=0"])
    hist, end = fmtools.load_history(d / "history.tsv")
    ck = fmtools.load_checkpoint(d / "checkpoint.h5")
    assert end == "done" and list(hist["step"]) == list(range(1, 41))
    np.testing.assert_allclose(hist["loss"], ck.history["loss"], rtol=1e-7)


def test_report_of_dataset_runs(tmp_path):
    """A 2-D dataset run: energy distance to held-out rows and its floor; an image run (8 x 8, two
    classes: dark and bright images): the classifier's figures, a grid per class, trajectory strips."""
    import fm_data
    rng = np.random.default_rng(0)
    fm_data.write(tmp_path / "moons.h5", *[fm_data.toy("moons", n, rng)[0] for n in (2000,)], value_range=(-1, 1),
                  x_test=fm_data.toy("moons", 500, rng)[0])
    run(["-c", SEED_INI, "-o", tmp_path / "m", "--data.target=file", f"--data.file={tmp_path / 'moons.h5'}",
         "--train.steps=300", "--model.hidden=128,128", "--path.schedule=linear", "--sample.n=500"], np_=2)
    r = subprocess.run([sys.executable, ANALYZE, "report", str(tmp_path / "m")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.load(open(tmp_path / "m" / "metrics.json"))
    assert 0 < m["energy_distance_floor_train_rows"] < m["energy_distance"] < 0.5, m
    assert (tmp_path / "m" / "figures" / "samples.png").exists()

    y = np.arange(600) % 2
    x = np.where(y[:, None, None, None] == 1, 200, 40) + rng.integers(-30, 30, (600, 1, 8, 8))
    fm_data.write(tmp_path / "img.h5", x.astype(np.uint8), y, x[:100].astype(np.uint8), y[:100], (0, 255), ["dark", "bright"])
    run(["-c", SEED_INI, "-o", tmp_path / "i", "--data.target=file", f"--data.file={tmp_path / 'img.h5'}",
         "--model.classes=2", "--model.hidden=64", "--path.schedule=linear", "--train.steps=400", "--train.batch=128",
         "--sample.n=40", "--sample.steps=20", "--sample.trajectories=4"], np_=2)
    r = subprocess.run([sys.executable, ANALYZE, "report", str(tmp_path / "i")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.load(open(tmp_path / "i" / "metrics.json"))["images"]
    assert m["classifier_test_accuracy"] > 0.95 and m["sample_accuracy"] > 0.9, m
    assert m["frechet"] >= 0 and m["frechet_floor_real_train"] >= 0 and len(m["per_class_accuracy"]) == 2
    for f in ("samples_grid.png", "trajectories.png", "loss.png"):
        assert (tmp_path / "i" / "figures" / f).exists(), f
    s = fmtools.load_samples(tmp_path / "i" / "samples.h5")
    assert s.attrs["data_shape"] == [1, 8, 8] and s.attrs["value_range"] == [0.0, 255.0], s.attrs
    assert (tmp_path / "img.classifier.npz").exists(), "the classifier is kept beside the dataset"
    # The numpy model of a conditional run (Fourier-free, label embedding) reproduces fmtrain's
    # guided Euler steps, at w = 1 and at w = 2.5.
    ck = fmtools.load_checkpoint(tmp_path / "i" / "checkpoint.h5")
    for g in (1.0, 2.5):
        run(["sample", "--checkpoint", tmp_path / "i" / "checkpoint.h5", "-o", tmp_path / "g.h5", f"--sample.guidance={g}",
             "--sample.n=6", "--sample.steps=10", "--sample.trajectories=6"])
        s = fmtools.load_samples(tmp_path / "g.h5")
        assert s.attrs["data_shape"] == [1, 8, 8], "fmtrain sample records the data's shape from the checkpoint"
        traj, h = s.trajectories.astype(np.float64).reshape(6, 11, -1), 0.1
        for k in range(10):
            u = fmtools.velocity(ck, traj[:, k], s.times[k], s.labels, g)
            step = (traj[:, k + 1] - traj[:, k]) / h
            assert np.max(np.abs(step - u) / (1 + np.abs(u))) < 2e-3, f"guidance {g}, step {k}"


def test_frechet_distance():
    import fmimages
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4000, 3)), rng.standard_normal((4000, 3)) * 2 + 1
    # Gaussians N(0, I) and N(1, 4I): |mu|^2 = 3, tr(I + 4I - 2 * 2I) = 3
    assert abs(fmimages.frechet(a, b) - 6.0) < 0.3
    assert fmimages.frechet(a, a) < 1e-9


def test_report_adds_the_kl_estimate_of_logprob(seed_runs, tmp_path):
    """With RUN_DIR/logprob.h5 (fmtrain logprob's true draws), metrics.json holds
    E[log p_data - log p_model] over them, as computed from the file by hand."""
    d = tmp_path / "run"
    import shutil
    shutil.copytree(seed_runs[1], d)
    run(["logprob", "--checkpoint", d / "checkpoint.h5", "--sample.n=500", "--sample.solver=rk4", "--sample.steps=20"])
    r = subprocess.run([sys.executable, ANALYZE, "report", str(d), "--no-plots"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.load(open(d / "metrics.json"))
    ck = fmtools.load_checkpoint(d / "checkpoint.h5")
    with h5py.File(d / "logprob.h5") as f:
        want = np.mean(fmtools.target_of(ck).logpdf(f["x"][()]) - f["logp"][()])
    assert m["kl_estimate"] == pytest.approx(want) and m["logprob_points"] == 500
    assert m["kl_estimate"] > 0.5  # 30 steps of training: far from the data
    assert "KL(p_data || p_model) estimate" in r.stdout


def test_solvers_figure_and_table(seed_runs, tmp_path):
    """fm_analyze.py solvers: one row per samples file with its solver, evaluations and energy
    distance; the figure is written."""
    d = tmp_path / "solvers"
    d.mkdir()
    ck = seed_runs[1] / "checkpoint.h5"
    for name, extra in [("e10", ["--sample.solver=euler", "--sample.steps=10"]),
                        ("r5", ["--sample.solver=rk4", "--sample.steps=5"]),
                        ("d5", ["--sample.solver=dopri5", "--sample.atol=1e-3", "--sample.rtol=1e-3"])]:
        run(["sample", "--checkpoint", ck, "-o", d / f"{name}.h5", "--sample.n=400", *extra])
    r = subprocess.run([sys.executable, ANALYZE, "solvers", str(d), "--checkpoint", str(ck)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    rows = {x["file"]: x for x in json.load(open(d / "solvers.json"))["runs"]}
    assert rows["e10.h5"]["nfe_mean"] == 10 and rows["r5.h5"]["nfe_mean"] == 20 and rows["d5.h5"]["steps"] is None
    with h5py.File(d / "d5.h5") as f:
        assert rows["d5.h5"]["nfe_mean"] == pytest.approx(f["nfe"][()].mean())
    s = fmtools.load_samples(d / "e10.h5")
    want = fmtools.metrics(s.samples, fmtools.target_of(fmtools.load_checkpoint(ck)), seed=0)["energy_distance"]
    assert rows["e10.h5"]["energy_distance"] == pytest.approx(want)
    assert (d / "solvers.png").stat().st_size > 10000
