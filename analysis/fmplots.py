"""The figures of the seed post, from fmtrain's HDF5 files alone (matplotlib, Agg backend)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fmtools  # noqa: E402


def _grid(extent, n=300):
    g = np.linspace(-extent, extent, n)
    xx, yy = np.meshgrid(g, g)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], 1)


def _density(ax, dist, extent, cmap="Blues", alpha=1.0):
    xx, yy, pts = _grid(extent)
    ax.imshow(np.exp(dist.logpdf(pts)).reshape(xx.shape), extent=(-extent, extent, -extent, extent),
              origin="lower", cmap=cmap, alpha=alpha)
    ax.set_aspect("equal")


def _backdrop(ax, target, extent):
    """The target density in grey under samples, on the square [-extent, extent]^2."""
    _density(ax, target, extent, cmap="Greys", alpha=0.6)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def densities(path, source, target, extent=15.0):
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, d, title in ((axes[0], source, "source p_init"), (axes[1], target, "target p_data")):
        _density(ax, d, extent)
        ax.set_title(title)
    _save(fig, path)


def samples_over_time(path, samples, target, extent=15.0, at=(0.0, 1 / 3, 2 / 3, 1.0)):
    """Samples at t = 0, 1/3, 2/3, 1 (from the recorded trajectories) over the target density."""
    traj, times = samples.trajectories, samples.times
    fig, axes = plt.subplots(1, len(at), figsize=(4.2 * len(at), 4.4))
    for ax, t in zip(axes, at):
        k = int(np.abs(times - t).argmin())
        _backdrop(ax, target, extent)
        ax.scatter(traj[:, k, 0], traj[:, k, 1], s=2, c="tab:red", alpha=0.6)
        ax.set_title(f"t = {times[k]:.2f}")
    _save(fig, path)


def trajectories(path, samples, target, extent=15.0, most=300):
    traj = samples.trajectories[:most]
    fig, ax = plt.subplots(figsize=(6, 6))
    _backdrop(ax, target, extent)
    for tr in traj:
        ax.plot(tr[:, 0], tr[:, 1], lw=0.4, alpha=0.5, c="tab:blue")
    if len(traj):
        ax.scatter(traj[:, 0, 0], traj[:, 0, 1], s=3, c="black", label="x0")
        ax.scatter(traj[:, -1, 0], traj[:, -1, 1], s=3, c="tab:red", label="x1")
        ax.legend(loc="upper right")
    ax.set_title(f"{len(traj)} trajectories")
    _save(fig, path)


def loss_curve(path, history, window=100, title="training loss"):
    """The loss on a log scale with a running mean: the seed's loss is heavy-tailed."""
    step, loss = history["step"], history["loss"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(step, loss, lw=0.5, alpha=0.4, label="loss")
    ax.plot(step, fmtools.running_mean(loss, window), lw=1.5, label=f"running mean ({window})")
    val = np.asarray(history.get("val_loss", []), np.float64)
    if val.size and np.isfinite(val).any():
        ok = np.isfinite(val)
        ax.plot(np.asarray(step)[ok], val[ok], "o-", ms=3, lw=1, label="held-out rows")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("CFM loss")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def loss_curves(path, histories, window=100):
    """The running mean of the loss of several runs (a sweep) on one log-scale axis."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, h in histories.items():
        ax.plot(h["step"], fmtools.running_mean(h["loss"], window), lw=1.2, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"CFM loss, running mean ({window})")
    ax.legend(fontsize=8)
    _save(fig, path)


def _image(rows, shape):
    """Rows in [-1, 1] as images [n, H, W] (or [n, H, W, 3]) in [0, 1] for imshow."""
    a = np.clip((np.asarray(rows, np.float64).reshape((len(rows),) + tuple(shape)) + 1) / 2, 0, 1)
    return a[:, 0] if shape[0] == 1 else np.moveaxis(a, 1, -1)


def image_grid(path, samples, labels, shape, names=None, per_class=10, title="samples"):
    """A row of per_class samples for each class (the first of each label), or a plain grid."""
    if labels is None:
        rows = [np.arange(k * per_class, min((k + 1) * per_class, len(samples))) for k in range(per_class)]
        names = None
    else:
        rows = [np.flatnonzero(labels == k)[:per_class] for k in range(int(labels.max()) + 1)]
    imgs = _image(samples, shape)
    fig, axes = plt.subplots(len(rows), per_class, figsize=(per_class * 0.9, len(rows) * 0.95), squeeze=False)
    for r, idx in enumerate(rows):
        for c in range(per_class):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(idx):
                ax.imshow(imgs[idx[c]], cmap="gray" if shape[0] == 1 else None, vmin=0, vmax=1)
        if names is not None:
            axes[r][0].text(-0.15, 0.5, names[r], transform=axes[r][0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def image_trajectories(path, s, shape, at=8, most=8):
    """Recorded trajectories as strips of images from noise (t = 0) to sample (t = 1)."""
    T = len(s.times)
    ks = np.unique(np.linspace(0, T - 1, at).round().astype(int))
    n = min(most, len(s.trajectories))
    fig, axes = plt.subplots(n, len(ks), figsize=(len(ks) * 0.9, n * 0.95), squeeze=False)
    for r in range(n):
        imgs = _image(s.trajectories[r, ks], shape)
        for c, k in enumerate(ks):
            ax = axes[r][c]
            ax.axis("off")
            ax.imshow(imgs[c], cmap="gray" if shape[0] == 1 else None, vmin=0, vmax=1)
            if r == 0:
                ax.set_title(f"t={s.times[k]:.2f}", fontsize=7)
    _save(fig, path)


def points(path, samples, reference, title="samples", extent=None):
    """2-D samples beside reference points (a dataset's held-out rows)."""
    e = extent or float(np.abs(reference).max() * 1.1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, x, t in ((axes[0], reference, "data (held out)"), (axes[1], samples, title)):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
        ax.set_xlim(-e, e)
        ax.set_ylim(-e, e)
        ax.set_aspect("equal")
        ax.set_title(t)
    _save(fig, path)


def solvers(path, rows, floor=None):
    """Energy distance against mean function evaluations, one line per solver (log-log)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name in sorted({r["solver"] for r in rows}):
        rs = sorted((r for r in rows if r["solver"] == name), key=lambda r: r["nfe_mean"])
        ax.plot([r["nfe_mean"] for r in rs], [r["energy_distance"] for r in rs], "o-", label=name)
    if floor:
        ax.axhline(floor, color="grey", ls="--", lw=1, label="true samples")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("function evaluations per sample (mean)")
    ax.set_ylabel("energy distance to the target")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("samples of one checkpoint, per solver")
    _save(fig, path)
