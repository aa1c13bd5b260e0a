"""Shared helpers of the end-to-end tests: run fmtrain (under mpirun), read its HDF5 files.

ctest sets FMTRAIN (the binary) and FM_SOURCE_DIR, and the two variables Open MPI needs to run as
root; --oversubscribe lets 4 or 64 ranks share the 2 cores of a CI machine.
"""
import hashlib
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

SOURCE = Path(os.environ.get("FM_SOURCE_DIR", Path(__file__).resolve().parents[1]))
FMTRAIN = os.environ.get("FMTRAIN", str(SOURCE / "build" / "fmtrain"))
SEED_INI = str(SOURCE / "jobs" / "gmm11.ini")


def skip_unless_required(reason):
    """Skips a test that this machine cannot run, or fails it when CI demands every test
    (FM_REQUIRE_ALL=1 in .ci/run): a green CI never hides a test that did not run."""
    if os.environ.get("FM_REQUIRE_ALL") == "1":
        pytest.fail(f"FM_REQUIRE_ALL=1 but this test cannot run: {reason}")
    pytest.skip(reason)


def run(args, np_=None, check=True, timeout=600, env=None):
    """Runs fmtrain ARGS, on np_ ranks through mpirun when np_ is given; returns the result."""
    cmd = [FMTRAIN] + [str(a) for a in args]
    if np_ is not None:
        cmd = ["mpirun", "--oversubscribe", "-np", str(np_)] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **env) if env else None)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}")
    return r


def assert_refused(args, outdir, *fragments, np_=None, env=None):
    """A bad input: a non-zero exit, one line 'fmtrain: error: ...' holding every fragment (the
    only line on stderr without mpirun, whose own banner may follow it), outdir unchanged."""
    before = tree_digest(outdir)
    r = run(args, np_=np_, check=False, timeout=120, env=env)
    assert r.returncode != 0, f"accepted: {args}"
    lines = [l for l in r.stderr.splitlines() if l.startswith("fmtrain: error:")]
    assert len(lines) == 1, f"expected one error line, got:\n{r.stderr}"
    if np_ is None:
        assert r.stderr.strip() == lines[0], f"more than one line on stderr:\n{r.stderr}"
    for frag in fragments:
        assert frag in lines[0], f"'{frag}' not in: {lines[0]}"
    assert tree_digest(outdir) == before, "the output directory changed"
    return lines[0]


def params(path):
    """The model parameters of a checkpoint as {name: array}."""
    with h5py.File(path, "r") as f:
        out = {}
        f["model"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out


def history(path):
    with h5py.File(path, "r") as f:
        return f["history/step"][()], f["history/loss"][()]


def tree_digest(d, skip=()):
    """A checksum of every file name and content under d: 'nothing changed' is digest equality."""
    h = hashlib.sha256()
    for p in sorted(Path(d).rglob("*")):
        if p.name in skip:
            continue
        h.update(str(p.relative_to(d)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def assert_close_rel(a, b, rel, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    err = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3)) if a.size else 0.0
    assert err <= rel, f"{what}: max relative difference {err:.3g} > {rel}"


@pytest.fixture(scope="session")
def seed_runs(tmp_path_factory):
    """The seed config for 30 steps on 1, 2 and 4 ranks (a shared fixture: several tests read it)."""
    base = tmp_path_factory.mktemp("seed30")
    out = {}
    for p in (1, 2, 4):
        d = base / f"np{p}"
        run(["-c", SEED_INI, "-o", d, "--train.steps=30", "--train.log_every=10", "--sample.n=300",
             "--sample.trajectories=20", "--sample.steps=50"], np_=p)
        out[p] = d
    return out
