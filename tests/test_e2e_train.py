"""fmtrain as users run it: the same run on any number of ranks, sampling, checkpoints."""
import h5py
import numpy as np

from conftest import SEED_INI, assert_close_rel, history, params, run


def test_same_run_on_1_2_4_ranks(seed_runs):
    s1, l1 = history(seed_runs[1] / "checkpoint.h5")
    assert list(s1) == list(range(1, 31)), "every one of the first 100 steps is recorded"
    assert np.all(np.isfinite(l1)) and l1[0] > l1[-1], "the loss falls over 30 steps"
    p1 = params(seed_runs[1] / "checkpoint.h5")
    for p in (2, 4):
        s, l = history(seed_runs[p] / "checkpoint.h5")
        assert list(s) == list(s1)
        assert_close_rel(l, l1, 1e-4, f"loss history on {p} ranks")
        pp = params(seed_runs[p] / "checkpoint.h5")
        assert pp.keys() == p1.keys()
        for k in p1:
            assert_close_rel(pp[k], p1[k], 1e-4, f"{k} on {p} ranks")


def test_different_seed_gives_a_different_run(seed_runs, tmp_path):
    run(["-c", SEED_INI, "-o", tmp_path, "--train.steps=3", "--train.seed=7", "--sample.n=0"])
    _, l7 = history(tmp_path / "checkpoint.h5")
    _, l0 = history(seed_runs[1] / "checkpoint.h5")
    assert not np.allclose(l7, l0[:3]), "the seed must change the draws"


def test_sampling_same_on_1_and_3_ranks(seed_runs, tmp_path):
    ckpt = seed_runs[1] / "checkpoint.h5"
    args = ["sample", "--checkpoint", ckpt, "--sample.n=301", "--sample.trajectories=7", "--sample.steps=40"]
    run(args + ["-o", tmp_path / "s1.h5"], np_=1)
    run(args + ["-o", tmp_path / "s3.h5"], np_=3)
    with h5py.File(tmp_path / "s1.h5") as a, h5py.File(tmp_path / "s3.h5") as b:
        assert a["samples"].shape == (301, 2) and a["trajectories"].shape == (7, 41, 2)
        assert np.max(np.abs(a["samples"][()] - b["samples"][()])) <= 1e-5
        assert np.max(np.abs(a["trajectories"][()] - b["trajectories"][()])) <= 1e-5
        # Recorded trajectories start at the x0 of the same samples and end at them.
        np.testing.assert_array_equal(a["trajectories"][:, -1, :], a["samples"][:7])


def test_end_of_training_samples_reproduced_by_sample_command(seed_runs, tmp_path):
    d = seed_runs[2]
    run(["sample", "--checkpoint", d / "checkpoint.h5", "-o", tmp_path / "again.h5"], np_=2)
    with h5py.File(d / "samples.h5") as a, h5py.File(tmp_path / "again.h5") as b:
        np.testing.assert_array_equal(a["samples"][()], b["samples"][()])
        np.testing.assert_array_equal(a["trajectories"][()], b["trajectories"][()])
        assert a.attrs["checkpoint_step"] == b.attrs["checkpoint_step"] == 30


def test_sample_seed_changes_samples(seed_runs, tmp_path):
    d = seed_runs[1]
    run(["sample", "--checkpoint", d / "checkpoint.h5", "-o", tmp_path / "s.h5", "--sample.seed=99"])
    with h5py.File(d / "samples.h5") as a, h5py.File(tmp_path / "s.h5") as b:
        assert not np.allclose(a["samples"][()], b["samples"][()])


def test_64_ranks_uneven_shards(seed_runs, tmp_path):
    """As users launch it: 1000 samples over 64 ranks (15 or 16 each), oversubscribed here."""
    run(["-c", SEED_INI, "-o", tmp_path, "--train.steps=5", "--sample.n=100", "--sample.trajectories=10",
         "--sample.steps=10"], np_=64, timeout=900)
    s, l = history(tmp_path / "checkpoint.h5")
    s1, l1 = history(seed_runs[1] / "checkpoint.h5")
    assert list(s) == list(s1[:5])
    assert_close_rel(l, l1[:5], 1e-4, "loss history on 64 ranks")


def test_batch_smaller_than_ranks(tmp_path):
    """3 samples over 4 ranks: one rank has none and still takes part; same as 1 rank."""
    common = ["-c", SEED_INI, "--train.steps=4", "--train.batch=3", "--sample.n=2", "--sample.trajectories=1",
              "--sample.steps=5"]
    run(common + ["-o", tmp_path / "a"], np_=1)
    run(common + ["-o", tmp_path / "b"], np_=4)
    assert_close_rel(history(tmp_path / "b/checkpoint.h5")[1], history(tmp_path / "a/checkpoint.h5")[1], 1e-4, "loss")
    with h5py.File(tmp_path / "a/samples.h5") as a, h5py.File(tmp_path / "b/samples.h5") as b:
        assert np.max(np.abs(a["samples"][()] - b["samples"][()])) <= 1e-5


def test_resume_continues_where_it_stopped(tmp_path):
    common = ["-c", SEED_INI, "-o", tmp_path / "r", "--sample.n=0"]
    run(common + ["--train.steps=20"], np_=2)
    r = run(common + ["--train.steps=40"], np_=2)
    assert "resuming" in r.stdout and "at step 20" in r.stdout
    run(["-c", SEED_INI, "-o", tmp_path / "u", "--sample.n=0", "--train.steps=40"], np_=2)
    s, l = history(tmp_path / "r/checkpoint.h5")
    su, lu = history(tmp_path / "u/checkpoint.h5")
    assert list(s) == list(su)
    np.testing.assert_array_equal(l, lu)
    pr, pu = params(tmp_path / "r/checkpoint.h5"), params(tmp_path / "u/checkpoint.h5")
    for k in pu:
        np.testing.assert_array_equal(pr[k], pu[k], err_msg=k)


def test_info_describes_both_files(seed_runs):
    d = seed_runs[1]
    r = run(["info", d / "checkpoint.h5"])
    assert "fm checkpoint" in r.stdout and "step: 30" in r.stdout and "/model/layer_0/weight" in r.stdout
    assert "[1024, 3]" in r.stdout and "hidden = 1024,16" in r.stdout
    r = run(["info", d / "samples.h5"])
    assert "fm samples" in r.stdout and "/trajectories" in r.stdout and "[20, 51, 2]" in r.stdout
    r = run(["info", d / "history.tsv"])
    assert "fm history (text), 30 rows" in r.stdout and "last row: 30\t" in r.stdout and "end: done step 30" in r.stdout
    bad = run(["info", d / "checkpoint.h5.tsv"], check=False)
    assert bad.returncode == 1 and "cannot open" in bad.stderr


def test_readme_lists_every_key():
    """The README's key table is `fmtrain keys`: documentation cannot drift from the code."""
    from conftest import SOURCE
    keys = run(["keys"]).stdout.strip()
    assert keys.count("\n") > 30
    assert keys in (SOURCE / "README.md").read_text(), "README.md's key table differs from `fmtrain keys`"
