#!/usr/bin/python3
"""The fault campaign of README "Nothing lost" (not in the test suite: about 10 minutes).

  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 /usr/bin/python3 tests/fault_campaign.py [--trials 12]

Kinds of trial, each counted clean or failed:
  kill9-1, kill9-2   SIGKILL to every fmtrain process at a random moment (1 or 2 ranks); the run
                     is resumed to the end: clean when at most one checkpoint interval was lost
                     (the last step logged minus the checkpoint's) and the final parameters equal
                     an uninterrupted run's bit for bit.
  sigterm-ckpt       SIGTERM at a random moment of a run checkpointing every 5 steps (most land
                     in or near a checkpoint write): exit 75 (or 0 if it had finished), then resume
                     to the end, bit for bit.
  sigterm-sample     SIGTERM to `fmtrain sample` at a random moment: exit 75 or 0; the previous
                     samples.h5 stays whole (or the new one is whole), no temporary file.
  disk-full-ckpt     a tmpfs with room for one checkpoint, not two: exit 1, one error line, the
                     previous checkpoint intact and resumable (root only).
  rank-death-4       SIGKILL to one rank of 4 mid-run: every process gone within 30 s.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np

SOURCE = Path(__file__).resolve().parent.parent
FMTRAIN = os.environ.get("FMTRAIN", str(SOURCE / "build" / "fmtrain"))
SEED = str(SOURCE / "jobs" / "gmm11.ini")
STEPS, EVERY = 4000, 500  # about 3 s on one rank of these machines
RUN = ["-c", SEED, "--train.steps=%d" % STEPS, "--train.checkpoint_every=%d" % EVERY, "--sample.n=0",
       "--train.progress=plain", "--train.log_every=50"]


def cmd(np_, args):
    base = [FMTRAIN] + [str(a) for a in args]
    return base if np_ == 1 else ["mpirun", "--oversubscribe", "-np", str(np_)] + base


def params(path):
    out = {}
    with h5py.File(path, "r") as f:
        f["model"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def same(a, b):
    pa, pb = params(a), params(b)
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def step_of(path):
    with h5py.File(path, "r") as f:
        return int(f.attrs["step"])


def fm_pids(tag):
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "fmtrain" and tag in (p / "cmdline").read_text():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def start(np_, args):
    """The run, and a list whose last element is the last step its log printed (read as it runs)."""
    p = subprocess.Popen(cmd(np_, args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = [0]

    def read():
        for line in p.stdout:
            if line.startswith("step "):
                seen.append(int(line.split()[1].split("/")[0]))
    threading.Thread(target=read, daemon=True).start()
    return p, seen


def kill9(work, ref, np_, rng):
    d = work / f"k{np_}-{rng.randrange(1 << 30)}"
    p, seen = start(np_, RUN + ["-o", d])
    time.sleep(rng.uniform(0.5, 3.5))
    for pid in fm_pids(str(d)):
        os.kill(pid, signal.SIGKILL)
    p.wait(timeout=60)
    reached = seen[-1]
    if p.returncode == 0:  # finished before the kill: nothing to lose
        return same(d / "checkpoint.h5", ref[np_]), "finished first", 0
    kept = step_of(d / "checkpoint.h5") if (d / "checkpoint.h5").exists() else 0
    lost_ok = reached - kept <= EVERY  # at most one checkpoint interval lost (killed in its write)
    r = subprocess.run(cmd(np_, RUN + ["-o", d]), capture_output=True, text=True, timeout=300)
    ok = r.returncode == 0 and lost_ok and same(d / "checkpoint.h5", ref[np_])
    return ok, f"killed after step {reached}, checkpoint holds {kept}, resume exit {r.returncode}", reached - kept


def sigterm_ckpt(work, ref, rng):
    d = work / f"t-{rng.randrange(1 << 30)}"
    args = RUN + ["-o", d, "--train.checkpoint_every=5"]
    p = subprocess.Popen(cmd(1, args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.3, 3.0))
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    if p.returncode not in (0, 75):
        return False, f"exit {p.returncode}", None
    r = subprocess.run(cmd(1, args), capture_output=True, text=True, timeout=300)
    return r.returncode == 0 and same(d / "checkpoint.h5", ref[1]), f"exit {p.returncode}, resumed", None


def sigterm_sample(work, ref, rng):
    d = work / f"s-{rng.randrange(1 << 30)}"
    d.mkdir()
    out = d / "samples.h5"
    base = ["sample", "--checkpoint", ref[1], "-o", out, "--sample.trajectories=0"]
    subprocess.run(cmd(1, base + ["--sample.n=1000"]), check=True, capture_output=True)
    before = out.read_bytes()
    p = subprocess.Popen(cmd(1, base + ["--sample.n=200000"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.1, 4.0))
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    with h5py.File(out, "r") as f:
        n = f["samples"].shape[0]
    whole = (p.returncode == 75 and out.read_bytes() == before) or (p.returncode == 0 and n == 200000)
    return whole and not (d / "samples.h5.tmp").exists(), f"exit {p.returncode}, {n} rows", None


def disk_full_ckpt(work, ref, rng):
    src = work / "small-src"
    if not src.exists():
        subprocess.run(cmd(1, RUN + ["-o", src, "--train.steps=10"]), check=True, capture_output=True)
    size = (src / "checkpoint.h5").stat().st_size
    mnt = work / f"mnt-{rng.randrange(1 << 30)}"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={(size * 3 // 2) // 4096 * 4096 + 4096}", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        return None, "no tmpfs (not root)", None
    try:
        d = mnt / "run"
        d.mkdir()
        shutil.copy(src / "checkpoint.h5", d / "checkpoint.h5")
        before = (d / "checkpoint.h5").read_bytes()
        r = subprocess.run(cmd(1, RUN + ["-o", d, "--train.steps=30", "--train.checkpoint_every=10"]),
                           capture_output=True, text=True, timeout=120)
        errs = [l for l in r.stderr.splitlines() if l.startswith("fmtrain: error:")]
        ok = r.returncode == 1 and len(errs) == 1 and (d / "checkpoint.h5").read_bytes() == before and \
            not (d / "checkpoint.h5.tmp").exists()
        return ok, f"exit {r.returncode}", None
    finally:
        subprocess.run(["umount", str(mnt)])


def rank_death(work, ref, rng):
    d = work / f"r-{rng.randrange(1 << 30)}"
    p = subprocess.Popen(cmd(4, RUN + ["-o", d, "--train.steps=100000"]), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(1.5, 4.0))
    victims = fm_pids(str(d))
    if len(victims) != 4:
        p.kill()
        return False, f"{len(victims)} ranks seen", None
    os.kill(rng.choice(victims), signal.SIGKILL)
    t0 = time.time()
    while time.time() - t0 < 30 and (fm_pids(str(d)) or p.poll() is None):
        time.sleep(0.2)
    gone = time.time() - t0
    left = fm_pids(str(d))
    if left or p.poll() is None:
        p.kill()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return False, "still running after 30 s", None
    return True, f"all gone in {gone:.1f} s", gone


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12, help="trials of each kind (default 12)")
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="fm-faults-"))
    ref = {}
    for np_ in (1, 2):  # the uninterrupted references
        ref[np_] = work / f"ref{np_}" / "checkpoint.h5"
        subprocess.run(cmd(np_, RUN + ["-o", ref[np_].parent]), check=True, capture_output=True)
    kinds = [("kill9-1", lambda: kill9(work, ref, 1, rng)), ("kill9-2", lambda: kill9(work, ref, 2, rng)),
             ("sigterm-ckpt", lambda: sigterm_ckpt(work, ref, rng)), ("sigterm-sample", lambda: sigterm_sample(work, ref, rng)),
             ("disk-full-ckpt", lambda: disk_full_ckpt(work, ref, rng)), ("rank-death-4", lambda: rank_death(work, ref, rng))]
    table = []
    for name, trial in kinds:
        clean = failed = skipped = 0
        worst = None
        for i in range(a.trials if name != "rank-death-4" else max(3, a.trials // 3)):
            ok, what, value = trial()
            if value is not None:
                worst = value if worst is None else max(worst, value)
            if ok is None:
                skipped += 1
            elif ok:
                clean += 1
            else:
                failed += 1
                print(f"  FAILED {name} #{i}: {what}", file=sys.stderr)
        table.append((name, clean + failed, clean, failed, worst))
        print(f"{name}: {clean + failed} trials, {clean} clean, {failed} failed" + (f", {skipped} skipped" if skipped else ""),
              flush=True)
    shutil.rmtree(work, ignore_errors=True)
    what = {"kill9-1": "steps lost", "kill9-2": "steps lost", "rank-death-4": "seconds to the last exit"}
    print("\n| trial | trials | clean | failed | worst |\n|---|---|---|---|---|")
    for name, n, clean, failed, worst in table:
        print(f"| {name} | {n} | {clean} | {failed} | " + (f"{worst:.4g} {what[name]}" if worst is not None else "") + " |")
    return 1 if any(t[3] for t in table) else 0


if __name__ == "__main__":
    sys.exit(main())
