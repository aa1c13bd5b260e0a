"""The HDF5 schema of DESIGN.md section 4, as users' tools (h5py) see it."""
import configparser
import subprocess

import h5py
import numpy as np

from conftest import run


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
        assert f.attrs["fm_git"] and f.attrs["fm_release"]


def test_sampler_draws_x0_from_the_source(seed_runs, tmp_path):
    """Every trajectory recorded from t = 0: 4000 numbers that must look N(0, 1) (the checkpoint's
    data.source_std): mean and std within 4 standard errors, and the two-sided 5% tail."""
    out = tmp_path / "s.h5"
    run(["sample", "--checkpoint", seed_runs[1] / "checkpoint.h5", "-o", out, "--sample.n=2000",
         "--sample.trajectories=2000", "--sample.steps=1"])
    with h5py.File(out, "r") as f:
        x0 = f["trajectories"][:, 0, :].astype(np.float64).ravel()
    n = x0.size
    assert abs(x0.mean()) < 4 / np.sqrt(n), f"x0 mean {x0.mean():.4f}"
    assert abs(x0.std() - 1.0) < 4 / np.sqrt(2 * n), f"x0 std {x0.std():.4f}, expected 1"
    assert abs(np.mean(np.abs(x0) > 1.96) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / n), "x0 tails"


def test_h5dump_and_h5ls_read_both_files(seed_runs):
    """Users' own tools (Debian's hdf5-tools): h5ls lists every dataset by its full path, h5dump
    shows the attributes."""
    layers = [f"/{g}/layer_{k}/{w}" for g in ("model", "optim/m", "optim/v") for k in range(3) for w in ("weight", "bias")]
    expect = {
        "checkpoint.h5": layers + ["/optim/step", "/history/step", "/history/loss", "/history/lr", "/history/val_loss",
                                   "/history/grad_norm", "/history/time", "/data/target_means", "/data/target_std"],
        "samples.h5": ["/samples", "/trajectories", "/times", "/nfe", "/sample", "/dim", "/trajectory"],
    }
    for name, paths in expect.items():
        r = subprocess.run(["h5ls", "-r", str(seed_runs[1] / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        listed = {line.split()[0] for line in r.stdout.splitlines() if "Dataset" in line}
        assert listed == set(paths), (name, sorted(listed))
        r = subprocess.run(["h5dump", "-A", str(seed_runs[1] / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        for a in ("fm_format", "fm_version", "fm_git", "config"):
            assert f'ATTRIBUTE "{a}"' in r.stdout, (name, a)


def _xarray_engines():
    """xarray and the netCDF engines Debian packages (python3-h5netcdf, python3-netcdf4)."""
    import importlib.util
    from conftest import skip_unless_required
    if importlib.util.find_spec("xarray") is None:
        skip_unless_required("python3-xarray is not installed")
    engines = [e for e, mod in (("h5netcdf", "h5netcdf"), ("netcdf4", "netCDF4")) if importlib.util.find_spec(mod)]
    if not engines:
        skip_unless_required("neither python3-h5netcdf nor python3-netcdf4 is installed")
    return engines


def test_xarray_sees_named_dimensions_and_coordinates(seed_runs, tmp_path):
    """Issue 17: xarray saw only phony_dim_0, phony_dim_1, ... Now the outputs carry HDF5
    dimension scales: samples (sample, dim), trajectories (trajectory, times, dim) with /times as
    the time coordinate, labels and nfe along sample, the history along step."""
    import xarray as xr
    run(["logprob", "--checkpoint", seed_runs[1] / "checkpoint.h5", "-o", tmp_path / "lp.h5", "--sample.n=40",
         "--sample.solver=rk4", "--sample.steps=20"])
    for engine in _xarray_engines():
        with xr.open_dataset(seed_runs[2] / "samples.h5", engine=engine) as ds:
            assert ds["samples"].dims == ("sample", "dim") and ds["samples"].shape == (300, 2)
            assert ds["trajectories"].dims == ("trajectory", "times", "dim")
            assert ds["nfe"].dims == ("sample",)
            assert "times" in ds.coords and ds["times"].shape == (51,)
            np.testing.assert_allclose(ds["times"].values, np.linspace(0, 1, 51), atol=1e-6)
            assert not any(d.startswith("phony_dim") for d in ds.dims), ds.dims
            # the coordinate picks trajectories at a time, as users would
            mid = ds["trajectories"].sel(times=0.5, method="nearest")
            assert mid.dims == ("trajectory", "dim") and mid.shape == (20, 2)
        with xr.open_dataset(seed_runs[1] / "checkpoint.h5", group="history", engine=engine) as h:
            assert h["loss"].dims == ("step",) and "step" in h.coords
            np.testing.assert_array_equal(h["step"].values, np.arange(1, 31))
            assert float(h["loss"].sel(step=30)) == float(h["loss"].values[-1])
        with xr.open_dataset(tmp_path / "lp.h5", engine=engine) as lp:
            assert lp["x"].dims == ("point", "dim") and lp["logp"].dims == ("point",)
