"""train.overlap = on: every finished gradient range is summed while the backward goes on, from the
rank's own gradient into another buffer (not in place: Open MPI then picks recursive halving and
doubling from 4 ranks up). The sums are the default mode's: on 2 ranks bit for bit (a + b has one
rounding), on 4 ranks to float rounding (the MLP: a range per layer)."""
import h5py
import numpy as np
import pytest

from conftest import SEED_INI, run

SEED = ["--train.steps=20", "--train.log_every=5", "--sample.n=0", "--model.hidden=256,256"]
RABENSEIFNER = {"OMPI_MCA_coll_libnbc_iallreduce_algorithm": "3"}


def model(path):
    out = {}
    with h5py.File(path, "r") as f:
        f["model"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        out["loss"] = f["history/loss"][()]
    return out


@pytest.mark.parametrize("np_,exact", [(2, True), (4, False)])
def test_overlap_sums_as_the_default_mode(tmp_path, np_, exact):
    run(["-c", SEED_INI, "-o", tmp_path / "off", *SEED], np_=np_)
    run(["-c", SEED_INI, "-o", tmp_path / "on", *SEED, "--train.overlap=on"], np_=np_, env=RABENSEIFNER)
    off, on = model(tmp_path / "off" / "checkpoint.h5"), model(tmp_path / "on" / "checkpoint.h5")
    assert off.keys() == on.keys() and len(off) > 4
    for k in off:
        if exact:
            assert np.array_equal(off[k], on[k]), k
        else:
            np.testing.assert_allclose(on[k], off[k], rtol=1e-4, atol=1e-5, err_msg=k)
