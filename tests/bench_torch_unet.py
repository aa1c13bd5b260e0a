#!/usr/bin/python3
"""fmtrain's U-Net (DESIGN.md section 6) as a PyTorch module, on one thread: the side-by-side
reference for tests/bench.sh (optional: runs where Debian's python3-torch is installed; not a
test), and the few lines a PyTorch user needs to load fmtrain's weights.

    /usr/bin/python3 tests/bench_torch_unet.py [--batch 64] [--steps 20] [--json FILE]
                                               [--checkpoint OUTDIR/checkpoint.h5]

Measures a training step (the CFM loss on the linear path, label dropout, backward, Adam) and a
forward without autograd (the sampler's work), images per second, at --batch on one thread.
With --checkpoint, loads fmtrain's tensors by name (each HDF5 path under /model with '/' -> '.')
into the module with load_state_dict(strict=True) and prints its velocity beside numpy's."""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn


class Fourier(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.randn(1, dim // 2))

    def forward(self, t):
        a = 2 * math.pi * t[:, None] * self.w
        return math.sqrt(2) * torch.cat([torch.sin(a), torch.cos(a)], dim=1)


def adapter(e, c):
    return nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, c))


class Block(nn.Module):
    def __init__(self, c, t_dim, y_dim, groups):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups, c), nn.Conv2d(c, c, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(groups, c), nn.Conv2d(c, c, 3, padding=1)
        self.ta = adapter(t_dim, c)
        self.ya = adapter(y_dim, c) if y_dim else None

    def forward(self, x, et, ey):
        h = self.c1(self.n1(nn.functional.silu(x))) + self.ta(et)[:, :, None, None]
        if self.ya is not None:
            h = h + self.ya(ey)[:, :, None, None]
        return x + self.c2(self.n2(nn.functional.silu(h)))


class UNet(nn.Module):
    """Attribute names as fmtrain's checkpoint paths: init, init_n, te, ye, enc, down, mid, up, dec, final."""

    def __init__(self, C=1, channels=(32, 64, 128), res_blocks=2, groups=8, t_dim=40, classes=10, y_dim=40):
        super().__init__()
        L, yd = len(channels), y_dim if classes else 0
        self.classes = classes
        self.init, self.init_n = nn.Conv2d(C, channels[0], 3, padding=1), nn.GroupNorm(groups, channels[0])
        self.te = Fourier(t_dim)
        if classes:
            self.ye = nn.Embedding(classes + 1, y_dim)
        blocks = lambda c: nn.ModuleList(Block(c, t_dim, yd, groups) for _ in range(res_blocks))  # noqa: E731
        self.enc = nn.ModuleList(blocks(channels[l]) for l in range(L - 1))
        self.down = nn.ModuleList(nn.Conv2d(channels[l], channels[l + 1], 3, stride=2, padding=1) for l in range(L - 1))
        self.mid = blocks(channels[-1])
        self.up = nn.ModuleList(nn.Conv2d(channels[l + 1], channels[l], 3, padding=1) for l in reversed(range(L - 1)))
        self.dec = nn.ModuleList(blocks(channels[l]) for l in reversed(range(L - 1)))
        self.final = nn.Conv2d(channels[0], C, 3, padding=1)

    def forward(self, x, t, y):
        et = self.te(t)
        ey = self.ye(y) if self.classes else None
        z = nn.functional.silu(self.init_n(self.init(x)))
        skips = []
        for blocks, down in zip(self.enc, self.down):
            for b in blocks:
                z = b(z, et, ey)
            skips.append(z)
            z = down(z)
        for b in self.mid:
            z = b(z, et, ey)
        for up, blocks in zip(self.up, self.dec):
            z = up(nn.functional.interpolate(z, scale_factor=2, mode="nearest")) + skips.pop()
            for b in blocks:
                z = b(z, et, ey)
        return self.final(z)


def load_fmtrain(model, path, group="model"):
    """fmtrain's tensors into the module: the whole conversion is the name's '/' -> '.'."""
    import h5py
    with h5py.File(path, "r") as f:
        state = {}
        f[group].visititems(lambda n, o: state.__setitem__(n.replace("/", "."), torch.from_numpy(o[()]))
                            if isinstance(o, h5py.Dataset) else None)
    model.load_state_dict(state, strict=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--checkpoint")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = UNet()
    nparams = sum(p.numel() for p in model.parameters())
    if a.checkpoint:
        import sys
        sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/analysis")
        import numpy as np
        import fmtools
        ck = fmtools.load_checkpoint(a.checkpoint)
        load_fmtrain(model, a.checkpoint)
        x = np.random.default_rng(0).normal(size=(4, 784))
        with torch.no_grad():
            u = model(torch.from_numpy(x).float().view(4, 1, 28, 28), torch.full((4,), 0.5), torch.tensor([0, 1, 2, 10]))
        un = fmtools.velocity(ck, x, 0.5, np.array([0, 1, 2, 10]), 1.0)
        print(f"loaded {a.checkpoint}: largest |torch - numpy| {np.max(np.abs(u.view(4, -1).numpy() - un)):.3g} "
              f"of a largest |u| {np.max(np.abs(un)):.3g}")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    B = a.batch

    def step():
        z = torch.rand(B, 1, 28, 28) * 2 - 1
        y = torch.randint(0, 10, (B,))
        y = torch.where(torch.rand(B) < 0.1, torch.full_like(y, 10), y)
        t = torch.rand(B)
        x0 = torch.randn_like(z)
        xt = t[:, None, None, None] * z + (1 - t[:, None, None, None]) * x0
        loss = ((model(xt, t, y) - (z - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    train = statistics.median(times)
    x, tt, yy = torch.randn(B, 1, 28, 28), torch.rand(B), torch.randint(0, 11, (B,))
    ftimes = []
    with torch.no_grad():
        for _ in range(3):
            model(x, tt, yy)
        for _ in range(a.steps):
            t0 = time.perf_counter()
            model(x, tt, yy)
            ftimes.append(time.perf_counter() - t0)
    fwd = statistics.median(ftimes)
    print(f"PyTorch {torch.__version__} U-Net ({nparams} parameters), batch {B}, 1 thread: training step "
          f"{train * 1e3:.1f} ms = {B / train:.1f} images/s; forward {fwd * 1e3:.1f} ms = {B / fwd:.1f} images/s")
    if a.json:
        json.dump({"torch": torch.__version__, "batch": B, "params": nparams, "train_step_s": train,
                   "train_images_per_s": B / train, "forward_s": fwd, "forward_images_per_s": B / fwd}, open(a.json, "w"))


if __name__ == "__main__":
    main()
