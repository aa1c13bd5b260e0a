#!/usr/bin/python3
"""The seed post's recipe in PyTorch, on one thread: the side-by-side reference for
tests/bench.sh (optional: runs where Debian's python3-torch is installed; not a test).

    /usr/bin/python3 tests/bench_torch.py [--recipe post|lean] [--steps 5000] [--sample-n 10000] [--json FILE]

The work of jobs/gmm11.ini: MLP 3 -> 1024 -> 16 -> 2 with SiLU on concat(x, t), the sqrt path
(beta' = -0.5 / (sqrt(1 - t) + 1e-4)), the 11-mode ring, Adam 1e-3, batch 1000, the loss
mean((u_theta - u)^2); then Euler with 299 steps from 10,000 N(0, I) draws.
  --recipe post (default): as the post runs it with MIT 6.S184's classes: the target a
    torch.distributions MixtureSameFamily of MultivariateNormals, the conditional path and its
    target velocity (alpha' - beta'/beta alpha) z + beta'/beta x, eager autograd.
  --recipe lean: the same arithmetic with plain tensor draws (a faster reference).
Prints the median step, the whole training time and the sampling time."""
import argparse
import json
import math
import statistics
import time

import torch
import torch.distributions as D


class Ring:
    """The post's p_data: GaussianMixture.symmetric_2D(nmodes=11, std=1.0, scale=10.0)."""

    def __init__(self, nmodes=11, std=1.0, scale=10.0, lean=False):
        angles = torch.linspace(0, 2 * math.pi, nmodes + 1)[:nmodes]
        self.means = scale * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        self.std, self.lean = std, lean
        covs = torch.diag_embed(torch.ones(nmodes, 2)) * std ** 2
        self.dist = D.MixtureSameFamily(D.Categorical(probs=torch.ones(nmodes) / nmodes, validate_args=False),
                                        D.MultivariateNormal(self.means, covs, validate_args=False), validate_args=False)

    def sample(self, n):
        if self.lean:
            return self.means[torch.randint(0, len(self.means), (n,))] + self.std * torch.randn(n, 2)
        return self.dist.sample((n,))


def sqrt_path(t):
    """alpha = t, beta = sqrt(1 - t) and their derivatives, with the post's epsilon."""
    beta = torch.sqrt(1 - t)
    return t, torch.ones_like(t), beta, -0.5 / (beta + 1e-4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", choices=("post", "lean"), default="post")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--sample-n", type=int, default=10000)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    p_data = Ring(lean=a.recipe == "lean")
    model = torch.nn.Sequential(torch.nn.Linear(3, 1024), torch.nn.SiLU(), torch.nn.Linear(1024, 16), torch.nn.SiLU(),
                                torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    B, times = 1000, []
    t_start = time.perf_counter()
    for _ in range(a.steps):
        t0 = time.perf_counter()
        z = p_data.sample(B)
        t = torch.rand(B, 1)
        alpha, dalpha, beta, dbeta = sqrt_path(t)
        x0 = torch.randn_like(z)
        x = alpha * z + beta * x0
        if a.recipe == "post":
            u = (dalpha - dbeta / beta * alpha) * z + dbeta / beta * x
        else:
            u = dalpha * z + dbeta * x0
        loss = ((model(torch.cat([x, t], dim=-1)) - u) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    train_s = time.perf_counter() - t_start
    with torch.no_grad():
        x = torch.randn(a.sample_n, 2)
        ts = torch.linspace(0, 1, 300)
        t0 = time.perf_counter()
        for k in range(299):
            x = x + (ts[k + 1] - ts[k]) * model(torch.cat([x, ts[k].expand(a.sample_n, 1)], dim=-1))
        sample_s = time.perf_counter() - t0
    res = {"torch": torch.__version__, "recipe": a.recipe, "threads": torch.get_num_threads(), "steps": a.steps,
           "step_ms": 1e3 * statistics.median(times), "train_s": train_s, "sample_n": a.sample_n, "sample_s": sample_s,
           "final_loss": float(loss)}
    print(f"PyTorch {res['torch']} ({a.recipe} recipe), 1 thread: step {res['step_ms']:.2f} ms (median), {a.steps} steps "
          f"in {train_s:.1f} s, sampling {a.sample_n} x 299 Euler steps in {sample_s:.2f} s (final loss {res['final_loss']:.2f})")
    if a.json:
        json.dump(res, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
