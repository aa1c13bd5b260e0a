"""The HDF5 schema of DESIGN.md section 4, as users' tools (h5py) see it."""
import configparser

import h5py
import numpy as np


def _config_of(f):
    cp = configparser.ConfigParser()
    cp.read_string(f.attrs["config"])
    return cp


def test_checkpoint_schema(seed_runs):
    with h5py.File(seed_runs[1] / "checkpoint.h5", "r") as f:
        assert f.attrs["fm_format"] == "checkpoint"
        assert int(f.attrs["fm_version"]) == 1
        assert int(f.attrs["step"]) == 30 and int(f["optim/step"][()]) == 30
        cfg = _config_of(f)
        assert cfg["model"]["hidden"] == "1024,16" and cfg["train"]["steps"] == "30"
        shapes = {0: (1024, 3), 1: (16, 1024), 2: (2, 16)}
        for group in ("model", "optim/m", "optim/v"):
            for k, (o, i) in shapes.items():
                w, b = f[f"{group}/layer_{k}/weight"], f[f"{group}/layer_{k}/bias"]
                assert w.shape == (o, i) and b.shape == (o,)
                assert w.dtype == np.float32 and b.dtype == np.float32
        assert not any(k.startswith("layer_3") for k in f["model"])
        n = f["history/step"].shape[0]
        assert n == 30
        for name in ("loss", "lr", "grad_norm", "time"):
            assert f[f"history/{name}"].shape == (n,)
        assert f["history/loss"].dtype == np.float32
        assert np.all(np.diff(f["history/time"][()]) >= 0)
        np.testing.assert_allclose(f["history/lr"][()], 1e-3, rtol=1e-6)
        # v is a running mean of squared gradients: never negative.
        assert all(np.all(f[f"optim/v/layer_{k}/weight"][()] >= 0) for k in shapes)


def test_samples_schema(seed_runs):
    with h5py.File(seed_runs[1] / "samples.h5", "r") as f:
        assert f.attrs["fm_format"] == "samples" and int(f.attrs["fm_version"]) == 1
        assert f.attrs["solver"] == "euler"
        assert int(f.attrs["steps"]) == 50 and int(f.attrs["checkpoint_step"]) == 30 and int(f.attrs["seed"]) == 1
        assert f["samples"].shape == (300, 2) and f["samples"].dtype == np.float32
        assert f["trajectories"].shape == (20, 51, 2) and f["times"].shape == (51,)
        np.testing.assert_allclose(f["times"][()], np.linspace(0, 1, 51), atol=1e-7)
        cfg = _config_of(f)
        assert cfg["sample"]["n"] == "300"
        # Trajectories start from N(0, I) draws: their t = 0 row has mean near 0 and std near 1.
        x0 = f["trajectories"][:, 0, :]
        assert np.all(np.abs(x0) < 6)


def test_h5dump_reads_both_files(seed_runs):
    """Users' own tools: h5dump (Debian's hdf5-tools) shows every dataset and attribute."""
    import subprocess
    for name, expect in (("checkpoint.h5", ["/model/layer_0/weight", "fm_format", "history"]),
                         ("samples.h5", ["trajectories", "checkpoint_step", "solver"])):
        r = subprocess.run(["h5dump", "-H", str(seed_runs[1] / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        for e in expect:
            assert e.split("/")[-1] in r.stdout, (name, e)
