"""Load fmtrain's HDF5 outputs, evaluate its model in numpy, and measure samples against the target.

    import sys; sys.path.insert(0, "analysis")
    import fmtools
    ck = fmtools.load_checkpoint("runs/gmm11/checkpoint.h5")
    s = fmtools.load_samples("runs/gmm11/samples.h5")
    u = fmtools.velocity(ck, s.samples, t=0.5)          # the learnt vector field, numpy
    m = fmtools.metrics(s.samples, fmtools.target_of(ck), seed=0)

Only h5py, numpy (and matplotlib in plots) from Debian's packages.
"""
import configparser
from dataclasses import dataclass, field

import h5py
import numpy as np

import fmunet


def read_config(text):
    cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
    cp.read_string(text)
    return cp


@dataclass
class Checkpoint:
    path: str
    step: int
    config: configparser.ConfigParser
    params: dict           # every tensor under /model by its name ("layer_0/weight", ...)
    history: dict          # step, loss, lr, grad_norm, time
    target_means: np.ndarray = None
    target_std: float = None

    @property
    def classes(self):
        return int(self.config.get("model", "classes", fallback="0"))

    @property
    def model_type(self):
        return self.config.get("model", "type", fallback="mlp")  # format-1 configs have no model.type

    @property
    def weights(self):     # the MLP's [out, in] per layer
        return [self.params[f"layer_{k}/weight"] for k in range(self._layers())]

    @property
    def biases(self):      # the MLP's [out] per layer
        return [self.params[f"layer_{k}/bias"] for k in range(self._layers())]

    def _layers(self):
        return sum(1 for k in self.params if k.endswith("/weight") and k.startswith("layer_"))


def load_dataset(path):
    """A dataset file's arrays and attributes: {x, y, x_test, y_test, value_range, classes}."""
    with h5py.File(path, "r") as f:
        _check_format(f, path, "dataset")
        get = lambda k: f[k][()] if k in f else None  # noqa: E731
        names = f["y"].attrs.get("classes") if "y" in f else None
        return {"x": f["x"][()], "y": get("y"), "x_test": get("x_test"), "y_test": get("y_test"),
                "value_range": tuple(f["x"].attrs.get("value_range", (0, 255) if f["x"].dtype == np.uint8 else (-1, 1))),
                "classes": [str(c) for c in names] if names is not None else None}


def to_model_space(x, value_range):
    """Rows as the trainer sees them: value_range mapped to [-1, 1], flattened."""
    lo, hi = value_range
    return (2.0 * (np.asarray(x, np.float64).reshape(len(x), -1) - lo) / (hi - lo) - 1.0).astype(np.float32)


@dataclass
class Samples:
    path: str
    samples: np.ndarray     # [N, D]
    trajectories: np.ndarray  # [M, T, D]
    times: np.ndarray       # [T]
    attrs: dict = field(default_factory=dict)
    config: configparser.ConfigParser = None
    labels: np.ndarray = None  # [N] a conditional model's requested labels


def _check_format(f, path, want):
    fmt = f.attrs.get("fm_format")
    if fmt is None:
        raise ValueError(f"{path}: not an fm file (no fm_format attribute)")
    if want and fmt != want:
        raise ValueError(f"{path}: an fm {fmt} file, expected an fm {want}")
    if int(f.attrs["fm_version"]) > 1:
        raise ValueError(f"{path}: fm format version {int(f.attrs['fm_version'])} is newer than this reader (1)")


def load_checkpoint(path):
    with h5py.File(path, "r") as f:
        _check_format(f, path, "checkpoint")
        params = {}
        f["model"].visititems(lambda n, o: params.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        hist = {k: f[f"history/{k}"][()] for k in f["history"]}
        means = f["data/target_means"][()] if "data/target_means" in f else None
        std = float(f["data/target_std"][()]) if "data/target_std" in f else None
        return Checkpoint(str(path), int(f.attrs["step"]), read_config(f.attrs["config"]), params, hist, means, std)


def load_history(path):
    """The loss history of a run: from OUTDIR/history.tsv (written while training runs) or from a
    checkpoint. Returns ({step, loss, lr, grad_norm, time} arrays, end) where end is None while
    the run goes on, else "done", "stopped" or "failed"."""
    path = str(path)
    if path.endswith(".h5"):
        with h5py.File(path, "r") as f:
            _check_format(f, path, "checkpoint")
            return {k: f[f"history/{k}"][()] for k in f["history"]}, "done"
    rows, end, names = [], None, None
    with open(path) as f:
        for line in f:
            if line.startswith("# end:"):
                end = line.split()[2]
            elif line.startswith("#"):
                continue
            elif names is None:
                names = line.split()
            elif line.endswith("\n"):  # a line still being written is skipped
                rows.append([float(v) for v in line.split()])
    a = np.array(rows, dtype=np.float64).reshape(-1, len(names or [1]))
    hist = {n: a[:, i] for i, n in enumerate(names or [])}
    if "step" in hist:
        hist["step"] = hist["step"].astype(np.int64)
    return hist, end


def load_logprob(path):
    """An fmtrain logprob file: {"x", "logp", "x0", "logp0", "nfe"} arrays and its attributes."""
    with h5py.File(path, "r") as f:
        _check_format(f, path, "logprob")
        out = {k: f[k][()] for k in ("x", "logp", "x0", "logp0", "nfe")}
        out["attrs"] = {k: (v if isinstance(v, str) else v.item()) for k, v in f.attrs.items() if k != "config"}
        return out


def kl_estimate(lp, target):
    """E[log p_data(x) - log p_model(x)] over the logprob file's points (true draws): an estimate of
    KL(p_data || p_model) in nats, with its standard error."""
    d = target.logpdf(lp["x"]) - lp["logp"]
    return float(d.mean()), float(d.std() / np.sqrt(len(d)))


def load_samples(path):
    with h5py.File(path, "r") as f:
        _check_format(f, path, "samples")
        attrs = {k: (v if isinstance(v, str) else np.asarray(v).tolist() if k in ("data_shape", "value_range") else v.item())
                 for k, v in f.attrs.items() if k != "config"}
        return Samples(str(path), f["samples"][()], f["trajectories"][()], f["times"][()], attrs,
                       read_config(f.attrs["config"]), f["labels"][()] if "labels" in f else None)


def _act(name):
    return {
        "silu": lambda x: x / (1.0 + np.exp(-x)),
        "relu": lambda x: np.maximum(x, 0.0),
        "tanh": np.tanh,
    }[name]


def velocity(ck, x, t, y=None, guidance=1.0):
    """u_theta(x, t) in numpy (float64) from the checkpoint's tensors; x [N, D], t scalar or [N];
    for a conditional model, labels y (scalar or [N]; None: no label) guided by w as fmtrain's
    sampler does: u(x, t, K) + w (u(x, t, y) - u(x, t, K))."""
    if ck.model_type not in MODELS:
        raise ValueError(f"{ck.path}: no numpy forward for model.type = {ck.model_type} (have: {', '.join(MODELS)})")
    x = np.asarray(x, np.float64)
    t = np.broadcast_to(np.asarray(t, np.float64), (x.shape[0],))
    field = MODELS[ck.model_type]
    if y is None or ck.classes == 0:
        return field(ck, x, t, None)
    y = np.broadcast_to(np.asarray(y), (x.shape[0],))
    u_none = field(ck, x, t, None)
    return u_none + guidance * (field(ck, x, t, y) - u_none)


def _mlp_velocity(ck, x, t, y):
    """The MLP on rows [x | e(t) | e(y)] (DESIGN.md section 6)."""
    act = _act(ck.config["model"]["activation"])
    cols = [x]
    if ck.config.get("model", "time_embed", fallback="raw") == "fourier":
        w = ck.params["te/w"].astype(np.float64).ravel()
        a = 2 * np.pi * t[:, None] * w[None, :]
        cols += [np.sqrt(2) * np.sin(a), np.sqrt(2) * np.cos(a)]
    else:
        cols.append(t[:, None])
    if ck.classes:
        table = ck.params["ye/weight"].astype(np.float64)
        cols.append(table[np.full(len(x), ck.classes) if y is None else np.asarray(y)])
    a = np.concatenate(cols, axis=1)
    for k, (w, b) in enumerate(zip(ck.weights, ck.biases)):
        a = a @ w.T.astype(np.float64) + b
        if k < len(ck.weights) - 1:
            a = act(a)
    return a


# model.type -> its numpy forward (the executable specification of fmtrain's): one line per model.
MODELS = {"mlp": _mlp_velocity, "unet": fmunet.velocity}


class Mixture:
    """An equal-weight isotropic Gaussian mixture: the analytic target of a run."""

    def __init__(self, means, std):
        self.means = np.asarray(means, np.float64)
        self.std = float(std)

    @property
    def dim(self):
        return self.means.shape[1]

    def sample(self, n, rng):
        k = rng.integers(0, len(self.means), n)
        return self.means[k] + self.std * rng.standard_normal((n, self.dim))

    def logpdf(self, x):
        x = np.asarray(x, np.float64)
        d2 = ((x[:, None, :] - self.means[None, :, :]) ** 2).sum(-1)
        e = -0.5 * d2 / self.std ** 2
        m = e.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(e - m).sum(1))
        return lse - np.log(len(self.means)) - 0.5 * self.dim * np.log(2 * np.pi * self.std ** 2)

    def nearest(self, x):
        """Index of the nearest mean and the distance to it."""
        d2 = ((np.asarray(x, np.float64)[:, None, :] - self.means[None, :, :]) ** 2).sum(-1)
        k = d2.argmin(1)
        return k, np.sqrt(d2[np.arange(len(k)), k])


def target_of(ck_or_config, means=None, std=None):
    """The target mixture of a run: from the checkpoint's stored means, or rebuilt from its config."""
    if isinstance(ck_or_config, Checkpoint) and ck_or_config.target_means is not None:
        return Mixture(ck_or_config.target_means, ck_or_config.target_std)
    cfg = ck_or_config.config if isinstance(ck_or_config, Checkpoint) else ck_or_config
    d = cfg["data"]
    if d["target"] == "gmm_ring":
        k = int(d["modes"])
        a = 2 * np.pi * np.arange(k) / k
        means = np.stack([float(d["radius"]) * np.cos(a) + float(d["x_offset"]), float(d["radius"]) * np.sin(a)], 1)
        return Mixture(means, float(d["std"]))
    if d["target"] == "gaussian":
        return Mixture(np.zeros((1, int(d["dim"]))), float(d["std"]))
    raise ValueError("gmm_random targets need the checkpoint's /data/target_means")


def source_of(cfg):
    return Mixture(np.zeros((1, int(cfg["data"]["dim"]))), float(cfg["data"]["source_std"]))


def energy_distance(x, y, chunk=2000):
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic), in chunks to bound memory."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def mean_dist(a, b):
        b2 = (b * b).sum(1)
        s = 0.0
        for i in range(0, len(a), chunk):
            ai = a[i:i + chunk]
            d2 = (ai * ai).sum(1)[:, None] + b2[None, :] - 2.0 * ai @ b.T
            s += np.sqrt(np.maximum(d2, 0.0)).sum()
        return s / (len(a) * len(b))

    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


def metrics(x, target, seed=0, n_ref=None):
    """Quality of samples x against an analytic mixture; fresh true samples give the energy distance."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    k, dist = target.nearest(x)
    K = len(target.means)
    counts = np.bincount(k, minlength=K)
    p = counts / counts.sum()
    nz = p > 0
    ref = target.sample(n_ref or len(x), rng)
    return {
        "n": int(len(x)),
        "energy_distance": float(energy_distance(x, ref)),
        "modes_covered": int((counts >= 0.5 * len(x) / K).sum()),
        "modes": int(K),
        "within_3std": float((dist <= 3 * target.std).mean()),
        "kl_modes": float((p[nz] * np.log(p[nz] * K)).sum()),
        "mean_logpdf": float(target.logpdf(x).mean()),
    }


def running_mean(y, w):
    y = np.asarray(y, np.float64)
    if len(y) == 0:
        return y
    w = max(1, min(w, len(y)))
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y)
    out[w - 1:] = (c[w:] - c[:-w]) / w
    out[:w - 1] = c[1:w] / np.arange(1, w)
    return out
