#!/usr/bin/python3
"""The tables and figure of tests/scaling/run.sh: simulated step and all-reduce times against the
ring all-reduce's alpha-beta model, strong and weak scaling efficiency; train.overlap off and on."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = sys.argv[1]
runs = [json.loads(line) for line in open(f"{out}/runs.jsonl") if line.startswith("{")]
ALPHA = 4e-6  # a ring neighbour is two links away (host - leaf switch - host) at 2 us each
BW = {"fattree-25g.xml": 25e9 / 8, "fattree-100g.xml": 100e9 / 8}


def ring(p, nbytes, plat):
    """2 (P - 1) steps of one message of S / P bytes each: reduce-scatter, then all-gather."""
    return 0.0 if p == 1 else 2 * (p - 1) * (ALPHA + nbytes / p / BW[plat])


def get(label, plat, p):
    return next((r for r in runs if r["label"] == label and r["platform"] == plat and r["ranks"] == p), None)


rows = []
print("| model, scaling | network | ranks | step ms | all-reduce ms (simulated) | ring model ms | efficiency |")
print("|---|---|---|---|---|---|---|")
for label in ("seed-strong", "seed-weak", "unet-strong", "unet-weak", "seed-strong-trainer"):
    for plat in BW:
        base1 = get(label, plat, 1)
        for r in sorted((r for r in runs if r["label"] == label and r["platform"] == plat), key=lambda r: r["ranks"]):
            p, nbytes = r["ranks"], 4 * (r["params"] + 2)
            model = ring(p, nbytes, plat)
            eff = ""
            if base1:
                t1 = base1["step_s"]
                if "weak" in label:  # the same work per rank: time should not grow
                    per_rank = r["batch"] / p
                    eff = t1 * per_rank / base1["batch"] / r["step_s"]
                else:
                    eff = t1 / (p * r["step_s"])
            rows.append(dict(r, ring_s=model, efficiency=eff))
            print(f"| {label} | {plat.split('-')[1].split('.')[0]} | {p} | {1e3 * r['step_s']:.3f} | "
                  f"{1e3 * r['allreduce_s']:.3f} | {1e3 * model:.3f} | "
                  f"{'' if eff == '' else f'{100 * eff:.0f}%'} |")

# train.overlap: the same step with overlap off, on as fmtrain sums (from a buffer of its own), and
# on as an in-place sum would go (Open MPI's libnbc: binomial), on 25 Gb/s.
ov = [r for r in runs if "/" in r["label"]]
if ov:
    print("\n| model, scaling | ranks | overlap off ms | on, in place (before) ms | on, from a buffer (now) ms |")
    print("|---|---|---|---|---|")
    for case in dict.fromkeys(r["label"].split("/")[0] for r in ov):
        for p in sorted({r["ranks"] for r in ov if r["label"].startswith(case + "/")}):
            t = {v: get(f"{case}/{v}", "fattree-25g.xml", p) for v in ("off", "inplace", "on")}
            print(f"| {case} | {p} | " + " | ".join(f"{1e3 * t[v]['step_s']:.3f}" if t[v] else "" for v in t) + " |")
    rows += [dict(r, ring_s=ring(r["ranks"], 4 * (r["params"] + 2), r["platform"]), efficiency="") for r in ov]
json.dump(rows, open(f"{out}/scaling.json", "w"), indent=2)



def axis(ax, xlabel, title, fontsize):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("step ms")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=fontsize)


def curve(ax, rs, style, color, label):
    rs = sorted(rs, key=lambda r: r["ranks"])
    if rs:
        ax.plot([r["ranks"] for r in rs], [1e3 * r["step_s"] for r in rs], style, color=color, label=label)


fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
for ax, model in zip(axes, ("seed", "unet")):
    for label, style in ((f"{model}-strong", "o-"), (f"{model}-weak", "^--")):
        for plat, color in (("fattree-25g.xml", "C0"), ("fattree-100g.xml", "C1")):
            curve(ax, [r for r in rows if r["label"] == label and r["platform"] == plat], style, color,
                  f"{label} {plat.split('-')[1].split('.')[0]}")
    axis(ax, "simulated ranks (one core each)",
         {"seed": "seed MLP (20,530 parameters)", "unet": "U-Net (1.19 M parameters)"}[model], 7)
for case, color in zip(dict.fromkeys(r["label"].split("/")[0] for r in ov), ("C0", "C1", "C2", "C3")):
    for v, style in (("off", "o-"), ("inplace", "x:"), ("on", "^--")):
        curve(axes[2], [r for r in ov if r["label"] == f"{case}/{v}"], style, color,
              f"{case} overlap {dict(off='off', inplace='on, in place', on='on')[v]}")
axis(axes[2], "simulated ranks, 25 Gb/s", "train.overlap (Open MPI's libnbc, simulated)", 6)
fig.tight_layout()
fig.savefig(f"{out}/scaling.png", dpi=110)
print(f"JSON: {out}/scaling.json; figure: {out}/scaling.png")
