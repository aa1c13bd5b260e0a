#!/usr/bin/env python3
"""Analyse fmtrain runs from their HDF5 files.

  fm_analyze.py report RUN_DIR     metrics against the analytic target (beside true samples, the
                                   noise floor), RUN_DIR/metrics.json and RUN_DIR/figures/*.png
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import fmtools  # noqa: E402

ROWS = [("energy_distance", "energy distance", "{:.4f}"), ("modes_covered", "modes covered", "{:d}"),
        ("within_3std", "within 3 std of a mode", "{:.1%}"), ("kl_modes", "KL(mode histogram || uniform)", "{:.4f}"),
        ("mean_logpdf", "mean log-density", "{:.3f}")]


def table(run, truth):
    lines = [f"{'metric':32s} {'fmtrain':>10s} {'true samples':>13s}"]
    for key, label, fmt in ROWS:
        a, b = fmt.format(run[key]), fmt.format(truth[key])
        if key == "modes_covered":
            a, b = f"{a}/{run['modes']}", f"{b}/{truth['modes']}"
        lines.append(f"{label:32s} {a:>10s} {b:>13s}")
    return "\n".join(lines)


def report(args):
    run_dir = args.run_dir
    ck = fmtools.load_checkpoint(os.path.join(run_dir, "checkpoint.h5"))
    target = fmtools.target_of(ck)
    samples_path = args.samples or os.path.join(run_dir, "samples.h5")
    s = fmtools.load_samples(samples_path)
    # The noise floor: the same metrics for as many fresh true samples (another seed than the
    # reference set the energy distance compares with).
    truth_x = target.sample(len(s.samples), np.random.default_rng(args.seed + 1))
    run_m = fmtools.metrics(s.samples, target, seed=args.seed)
    true_m = fmtools.metrics(truth_x, target, seed=args.seed)
    out = {"run_dir": run_dir, "checkpoint_step": ck.step, "samples": samples_path,
           "solver": s.attrs.get("solver"), "sample_steps": s.attrs.get("steps"),
           "fmtrain": run_m, "true_samples": true_m,
           "final_loss_mean_last_100": float(np.mean(ck.history["loss"][-100:]))}
    print(f"{samples_path}: {len(s.samples)} samples, checkpoint step {ck.step}")
    print(table(run_m, true_m))
    json_path = os.path.join(run_dir, "metrics.json")
    with open(json_path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"metrics: {json_path}")
    if not args.no_plots:
        import fmplots
        fig_dir = os.path.join(run_dir, "figures")
        os.makedirs(fig_dir, exist_ok=True)
        source = fmtools.source_of(ck.config)
        if target.dim == 2:
            extent = float(np.abs(target.means).max() + 5 * target.std)
            fmplots.densities(os.path.join(fig_dir, "densities.png"), source, target, extent)
            fmplots.samples_over_time(os.path.join(fig_dir, "samples_over_time.png"), s, target, extent)
            fmplots.trajectories(os.path.join(fig_dir, "trajectories.png"), s, target, extent)
        fmplots.loss_curve(os.path.join(fig_dir, "loss.png"), ck.history)
        print(f"figures: {fig_dir}/")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="fm_analyze.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report", help="metrics, metrics.json and figures of one run directory")
    r.add_argument("run_dir")
    r.add_argument("--samples", help="samples file (default RUN_DIR/samples.h5)")
    r.add_argument("--seed", type=int, default=0, help="seed of the fresh true samples")
    r.add_argument("--no-plots", action="store_true")
    r.set_defaults(func=report)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, KeyError) as e:
        print(f"fm_analyze: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
