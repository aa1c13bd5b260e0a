"""Checkpoints of fm format 1 (written before the model interface: no /history/val_loss, no
fm_git, fm_release or data attributes, a stored config without the keys added since) still
load, resume and sample. The format-1 files are made here: a checkpoint of today's build
rewritten with h5py into format 1's layout, which the test checks against that layout's list of
datasets and attributes. (That today's build trains the same run as format 1's did, bit for bit,
was checked when the interface came in: see the README's design choices.)"""
import shutil

import h5py
import numpy as np

from conftest import SOURCE, run

INI = SOURCE / "tests" / "compat.ini"

# The config keys fmtrain had at format 1, by section (what a format-1 file's config holds).
FORMAT1_KEYS = {
    "data": "target dim modes radius std x_offset scale mean_seed source_std",
    "path": "schedule eps sigma_min",
    "model": "hidden activation time_embed",
    "optim": "lr beta1 beta2 eps clip schedule warmup",
    "train": "steps batch seed checkpoint_every log_every progress history_every keep_checkpoints resume microbatch "
             "overlap threads",
    "sample": "n steps solver seed trajectories batch",
    "output": "dir",
}
FORMAT1_ATTRS = {"config", "fm_format", "fm_version", "step"}
FORMAT1_DATASETS = ({"data/target_means", "data/target_std", "optim/step"} |
                    {f"history/{k}" for k in ("step", "loss", "lr", "grad_norm", "time")} |
                    {f"{g}/layer_{k}/{w}" for g in ("model", "optim/m", "optim/v") for k in range(3)
                     for w in ("weight", "bias")})


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def to_format1(src, dst):
    """src (today's checkpoint) rewritten as format 1 wrote it."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for name in set(datasets(dst)) - FORMAT1_DATASETS:
            del f[name]
        for a in set(f.attrs) - FORMAT1_ATTRS:
            del f.attrs[a]
        section, lines = None, []
        for line in f.attrs["config"].splitlines():
            if line.startswith("["):
                section = line[1:-1]
            elif " = " in line and line.split(" = ")[0] not in FORMAT1_KEYS[section].split():
                continue
            lines.append(line)
        f.attrs["config"] = "\n".join(lines) + "\n"
    assert set(datasets(dst)) == FORMAT1_DATASETS
    with h5py.File(dst) as f:
        assert set(f.attrs) == FORMAT1_ATTRS and "type = " not in f.attrs["config"]


def test_format1_checkpoint_resumes_to_the_same_run(tmp_path):
    run(["-c", INI, "-o", tmp_path / "whole", "--sample.n=0"])
    run(["-c", INI, "-o", tmp_path / "part", "--sample.n=0", "--train.steps=20"])
    (tmp_path / "old").mkdir()
    to_format1(tmp_path / "part" / "checkpoint.h5", tmp_path / "old" / "checkpoint.h5")
    r = run(["-c", INI, "-o", tmp_path / "old", "--sample.n=0", "--resume"])
    assert "resuming" in r.stdout and "at step 20" in r.stdout
    got, want = datasets(tmp_path / "old" / "checkpoint.h5"), datasets(tmp_path / "whole" / "checkpoint.h5")
    for k in want:
        if k != "history/time" and k != "history/val_loss":
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # The rows format 1 wrote have no validation loss: read back as NaN.
    assert np.all(np.isnan(got["history/val_loss"][:20]))


def test_format1_checkpoint_samples_as_before(tmp_path):
    run(["-c", INI, "-o", tmp_path, "--sample.n=0"])
    to_format1(tmp_path / "checkpoint.h5", tmp_path / "old.h5")
    for ck, out in ((tmp_path / "checkpoint.h5", "new.h5"), (tmp_path / "old.h5", "old_samples.h5")):
        run(["sample", "--checkpoint", ck, "-o", tmp_path / out, "--sample.n=64"])
    a, b = datasets(tmp_path / "new.h5"), datasets(tmp_path / "old_samples.h5")
    for k in ("samples", "trajectories", "times"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    r = run(["info", tmp_path / "old.h5"])
    assert "model: mlp 3-64-16-2 silu, 1330 parameters in 6 tensors" in r.stdout
