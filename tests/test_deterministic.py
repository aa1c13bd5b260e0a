"""train.deterministic = K: the same run bit for bit on 1, 2, 4 and 8 ranks (oversubscribed), for
the seed model and a small U-Net (K a power of two: a tree of float sums), on 1, 2, 3 and 6 (K = 6:
fixed point), across a resume that changes the number of ranks; without it,
runs differ by rounding (so the comparison can fail); the inputs it refuses."""
import sys

import h5py
import numpy as np
import pytest

from conftest import SEED_INI, SOURCE, assert_refused, run

sys.path.insert(0, str(SOURCE / "analysis"))
import fm_data  # noqa: E402


def datasets(path):
    """Every dataset of a checkpoint but the wall-clock history, as {name: array}."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    out.pop("history/time")
    return out


def differing(a, b):
    assert a.keys() == b.keys()
    return [k for k in a if not np.array_equal(a[k], b[k], equal_nan=True)]


RING = {"OMPI_MCA_coll_tuned_use_dynamic_rules": "1", "OMPI_MCA_coll_tuned_allreduce_algorithm": "4"}
SEED = ["--train.steps=25", "--train.log_every=5", "--sample.n=0", "--optim.ema=0.99"]


def same_on(tmp_path, ranks, args):
    """Runs ARGS on each number of ranks; asserts identical checkpoints; returns the datasets."""
    ref = None
    for p in ranks:
        d = tmp_path / f"np{p}"
        run(["-c", SEED_INI, "-o", d, *args], np_=p)
        got = datasets(d / "checkpoint.h5")
        if ref is None:
            ref = got
        else:
            assert differing(got, ref) == [], f"{p} ranks"
    return ref


def test_seed_model_bit_identical_on_1_2_4_8_ranks(tmp_path):
    ref = same_on(tmp_path, (1, 2, 4, 8), [*SEED, "--train.deterministic=8"])
    # Whatever all-reduce algorithm the MPI library picks (here Open MPI's ring, forced): the same.
    d = tmp_path / "ring"
    run(["-c", SEED_INI, "-o", d, *SEED, "--train.deterministic=8"], np_=4, env=RING)
    assert differing(datasets(d / "checkpoint.h5"), ref) == [], "4 ranks, ring all-reduce"
    # The default mode sums in another order on 4 ranks: the same run only to rounding.
    d = tmp_path / "plain"
    run(["-c", SEED_INI, "-o", d, *SEED], np_=4)
    run(["-c", SEED_INI, "-o", tmp_path / "plain1", *SEED])
    assert "model/layer_0/weight" in differing(datasets(d / "checkpoint.h5"), datasets(tmp_path / "plain1" / "checkpoint.h5"))


def test_fixed_point_sum_bit_identical_on_1_2_3_6_ranks(tmp_path):
    """K not a power of two: the shards are summed in fixed point, for 3 and 6 ranks as well."""
    same_on(tmp_path, (1, 2, 3, 6), [*SEED, "--train.deterministic=6"])


def test_resume_on_another_number_of_ranks(tmp_path):
    """12 steps on 2 ranks, then to 25 on 4: the bits of 25 steps on 1 rank."""
    d = tmp_path / "moved"
    run(["-c", SEED_INI, "-o", d, *SEED, "--train.deterministic=4", "--train.steps=12"], np_=2)
    run(["-c", SEED_INI, "-o", d, *SEED, "--train.deterministic=4"], np_=4)
    run(["-c", SEED_INI, "-o", tmp_path / "one", *SEED, "--train.deterministic=4"])
    assert differing(datasets(d / "checkpoint.h5"), datasets(tmp_path / "one" / "checkpoint.h5")) == []


def test_unet_bit_identical_on_1_2_4_8_ranks(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    x = (np.where(y[:, None, None, None] == 1, 200, 40) + rng.integers(-30, 30, (64, 1, 8, 8))).astype(np.uint8)
    data = tmp_path / "img.h5"
    fm_data.write(data, x, y, None, None, (0, 255), ["dark", "bright"])
    unet = ["--data.target=file", f"--data.file={data}", "--model.type=unet", "--model.channels=8,16",
            "--model.res_blocks=1", "--model.groups=4", "--model.time_embed=fourier", "--model.t_dim=8",
            "--model.classes=2", "--model.y_dim=4", "--path.schedule=linear", "--train.batch=16", "--train.steps=4",
            "--train.microbatch=3", "--train.log_every=2", "--sample.n=0", "--train.deterministic=8"]
    same_on(tmp_path, (1, 2, 4, 8), unet)


@pytest.mark.parametrize("args,np_,frags", [
    (["--train.deterministic=8"], 3, ["deterministic = 8 on 3 ranks", "divides 8"]),
    (["--train.deterministic=2000"], None, ["deterministic = 2000 shards of batch = 1000", "at most one shard per sample"]),
    (["--train.deterministic=4", "--train.overlap=on"], None, ["deterministic = 4", "overlap = off"]),
    (["--train.deterministic=-1"], None, ["--train.deterministic=-1", "from 0 to"]),
])
def test_refusals(tmp_path, args, np_, frags):
    d = tmp_path / "out"
    d.mkdir()
    assert_refused(["-c", SEED_INI, "-o", d / "run", *args], d, *frags, np_=np_)
