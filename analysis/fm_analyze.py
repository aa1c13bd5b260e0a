#!/usr/bin/python3
"""Analyse fmtrain runs from their files.

  fm_analyze.py report RUN_DIR     metrics against the analytic target (beside true samples, the
                                   noise floor; with RUN_DIR/logprob.h5 the KL estimate),
                                   RUN_DIR/metrics.json and RUN_DIR/figures/*.png;
                                   for a dataset run, against held-out rows (images: a classifier's
                                   accuracy and Frechet distance, grids per class)
  fm_analyze.py follow RUN_DIR     follows RUN_DIR/history.tsv while the run trains, redrawing
                                   RUN_DIR/figures/loss_live.png, until the run ends
  fm_analyze.py sweep DIR          every run under DIR (a SLURM array's tasks) in one table
                                   (DIR/sweep.csv, DIR/sweep.json) and one figure (DIR/sweep.png)
  fm_analyze.py solvers DIR        energy distance against function evaluations per solver, from
                                   the samples files in DIR (jobs/solvers.sh makes them)
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
    samples_path = args.samples or os.path.join(run_dir, "samples.h5")
    s = fmtools.load_samples(samples_path)
    if ck.config.get("data", "target") == "file":
        return report_dataset(args, ck, s, samples_path)
    target = fmtools.target_of(ck)
    # The noise floor: the same metrics for as many fresh true samples (another seed than the
    # reference set the energy distance compares with).
    truth_x = target.sample(len(s.samples), np.random.default_rng(args.seed + 1))
    run_m = fmtools.metrics(s.samples, target, seed=args.seed)
    true_m = fmtools.metrics(truth_x, target, seed=args.seed)
    out = {"run_dir": run_dir, "checkpoint_step": ck.step, "samples": samples_path,
           "solver": s.attrs.get("solver"), "sample_steps": s.attrs.get("steps"),
           "nfe_mean": s.attrs.get("nfe_mean"), "nfe_max": s.attrs.get("nfe_max"),
           "fmtrain": run_m, "true_samples": true_m,
           "final_loss_mean_last_100": float(np.mean(ck.history["loss"][-100:]))}
    print(f"{samples_path}: {len(s.samples)} samples, checkpoint step {ck.step}, "
          f"{s.attrs.get('nfe_mean', 0):.1f} function evaluations a sample ({s.attrs.get('solver')})")
    print(table(run_m, true_m))
    lp_path = os.path.join(run_dir, "logprob.h5")
    if os.path.exists(lp_path):  # fmtrain logprob's exact likelihood of true draws
        lp = fmtools.load_logprob(lp_path)
        kl, se = fmtools.kl_estimate(lp, target)
        out.update({"kl_estimate": kl, "kl_estimate_stderr": se, "logprob": lp_path, "logprob_points": len(lp["x"]),
                    "logprob_nfe_mean": lp["attrs"]["nfe_mean"]})
        print(f"{'KL(p_data || p_model) estimate':32s} {kl:10.4f}  (+- {se:.4f}, {len(lp['x'])} true points, {lp_path})")
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


def _write_metrics(run_dir, out):
    json_path = os.path.join(run_dir, "metrics.json")
    with open(json_path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"metrics: {json_path}")


def report_dataset(args, ck, s, samples_path):
    """A run on a dataset file: images get a classifier's verdict (fmimages) and a grid per class;
    vectors the energy distance to held-out rows beside that of as many training rows (the floor)."""
    import fmplots
    data_path = args.data or ck.config.get("data", "file")
    data = fmtools.load_dataset(data_path)
    shape = tuple(s.attrs.get("data_shape", data["x"].shape[1:]))  # samples.h5 says it; older files: the data
    out = {"run_dir": args.run_dir, "checkpoint_step": ck.step, "samples": samples_path, "data": data_path,
           "solver": s.attrs.get("solver"), "sample_steps": s.attrs.get("steps"), "weights": s.attrs.get("weights"),
           "guidance": s.attrs.get("guidance"), "final_loss_mean_last_100": float(np.mean(ck.history["loss"][-100:]))}
    labels = s.labels
    print(f"{samples_path}: {len(s.samples)} samples of {data_path}, checkpoint step {ck.step}")
    if len(shape) == 3:
        import fmimages
        cache = os.path.splitext(data_path)[0] + ".classifier.npz"
        m = fmimages.image_metrics(s.samples, labels, data, fmimages.classifier_for(data, cache), seed=args.seed)
        out["images"] = m
        print(f"classifier accuracy on real test images   {m['classifier_test_accuracy']:.1%}")
        if "sample_accuracy" in m:
            print(f"on samples, against the requested labels  {m['sample_accuracy']:.1%}")
        print(f"Frechet distance in its features, samples {m['frechet']:.3f}  (real training images: "
              f"{m['frechet_floor_real_train']:.3f})")
    else:
        ref = fmtools.to_model_space(data["x_test"] if data["x_test"] is not None else data["x"], data["value_range"])
        rng = np.random.default_rng(args.seed)
        n = min(len(s.samples), len(ref))
        train = fmtools.to_model_space(data["x"], data["value_range"])
        pick = lambda a: a[rng.choice(len(a), n, replace=False)]  # noqa: E731
        out["energy_distance"] = float(fmtools.energy_distance(pick(s.samples), pick(ref)))
        out["energy_distance_floor_train_rows"] = float(fmtools.energy_distance(pick(train), pick(ref)))
        print(f"energy distance to held-out rows {out['energy_distance']:.4f}  (training rows: "
              f"{out['energy_distance_floor_train_rows']:.4f})")
    _write_metrics(args.run_dir, out)
    if not args.no_plots:
        fig_dir = os.path.join(args.run_dir, "figures")
        os.makedirs(fig_dir, exist_ok=True)
        if len(shape) == 3:
            g = f"guidance {s.attrs['guidance']:g}, " if "guidance" in s.attrs else ""
            fmplots.image_grid(os.path.join(fig_dir, "samples_grid.png"), s.samples, labels, shape, data["classes"],
                               title=f"{g}{s.attrs.get('weights', '')} weights, step {ck.step}")
            if len(s.trajectories):
                fmplots.image_trajectories(os.path.join(fig_dir, "trajectories.png"), s, shape)
        elif shape == (2,):
            fmplots.points(os.path.join(fig_dir, "samples.png"), s.samples,
                           fmtools.to_model_space(data["x_test"] if data["x_test"] is not None else data["x"],
                                                  data["value_range"]))
        fmplots.loss_curve(os.path.join(fig_dir, "loss.png"), ck.history)
        print(f"figures: {fig_dir}/")
    return 0


def follow(args):
    """Redraws the loss while the run trains; returns when history.tsv says the run ended."""
    import time
    import fmplots
    path = os.path.join(args.run_dir, "history.tsv")
    fig_dir = os.path.join(args.run_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    out = args.out or os.path.join(fig_dir, "loss_live.png")
    t0, last = time.time(), -1
    while True:
        if os.path.exists(path):
            hist, end = fmtools.load_history(path)
            n = len(hist.get("step", []))
            if n and n != last:
                fmplots.loss_curve(out, hist, title=f"{args.run_dir}: step {hist['step'][-1]}")
                print(f"step {hist['step'][-1]}  loss {hist['loss'][-1]:.4f}  ({n} rows) -> {out}", flush=True)
                last = n
            if end:
                print(f"run {end}: {out}")
                return 0 if end == "done" else 3
        if args.timeout and time.time() - t0 > args.timeout:
            print(f"fm_analyze: error: no end of {path} within {args.timeout} s", file=sys.stderr)
            return 1
        time.sleep(args.every)


def sweep(args):
    """One row per run directory under DIR: its config keys that vary, final loss, metrics."""
    import csv
    import glob
    import fmplots
    runs = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(args.dir, "**", "checkpoint.h5"), recursive=True))
    if not runs:
        raise ValueError(f"no run (checkpoint.h5) under {args.dir}")
    rows, hists, cfgs = [], {}, {}
    for d in runs:
        ck = fmtools.load_checkpoint(os.path.join(d, "checkpoint.h5"))
        cfgs[d] = {f"{s}.{k}": v for s in ck.config.sections() for k, v in ck.config[s].items()}
        row = {"run": os.path.relpath(d, args.dir), "step": ck.step,
               "final_loss": float(np.mean(ck.history["loss"][-100:]))}
        sp = os.path.join(d, "samples.h5")
        if os.path.exists(sp):
            try:
                m = fmtools.metrics(fmtools.load_samples(sp).samples, fmtools.target_of(ck), seed=args.seed)
                row.update({k: m[k] for k in ("energy_distance", "modes_covered", "within_3std", "kl_modes", "mean_logpdf")})
            except ValueError:
                pass
        rows.append(row)
        hists[row["run"]] = ck.history
    # The keys that differ between runs (the sweep's axes), output.dir aside.
    keys = sorted(k for k in cfgs[runs[0]] if k != "output.dir" and len({c.get(k) for c in cfgs.values()}) > 1)
    for row, d in zip(rows, runs):
        for k in keys:
            row[k] = cfgs[d][k]
    cols = ["run"] + keys
    for r in rows:  # then every other column any run has, in first-seen order
        cols += [c for c in r if c not in cols]
    with open(os.path.join(args.dir, "sweep.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(args.dir, "sweep.json"), "w") as f:
        json.dump(rows, f, indent=2)
    widths = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(_fmt(r.get(c, "")).ljust(widths[c]) for c in cols))
    fmplots.loss_curves(os.path.join(args.dir, "sweep.png"), hists)
    print(f"table: {os.path.join(args.dir, 'sweep.csv')}; figure: {os.path.join(args.dir, 'sweep.png')}")
    return 0


def solvers(args):
    """Energy distance against function evaluations, one line per solver, from the samples files
    DIR/*.h5 of one checkpoint (jobs/solvers.sh makes them)."""
    import glob
    import fmplots
    files = sorted(glob.glob(os.path.join(args.dir, "*.h5")))
    if not files:
        raise ValueError(f"no samples files under {args.dir}")
    target = None
    rows = []
    for p in files:
        s = fmtools.load_samples(p)
        if target is None:
            ck_path = args.checkpoint or os.path.join(os.path.dirname(os.path.abspath(args.dir)), "checkpoint.h5")
            target = fmtools.target_of(fmtools.load_checkpoint(ck_path))
        m = fmtools.metrics(s.samples, target, seed=args.seed)
        adaptive = "atol" in s.attrs  # dopri5: steps is only its recording grid
        rows.append({"file": os.path.basename(p), "solver": s.attrs["solver"],
                     "steps": None if adaptive else s.attrs.get("steps"),
                     "atol": s.attrs.get("atol"), "nfe_mean": s.attrs["nfe_mean"], "nfe_max": s.attrs["nfe_max"],
                     "energy_distance": m["energy_distance"], "within_3std": m["within_3std"]})
    rows.sort(key=lambda r: (r["solver"], r["nfe_mean"]))
    n = len(s.samples)
    floor = fmtools.metrics(target.sample(n, np.random.default_rng(args.seed + 1)), target, seed=args.seed)["energy_distance"]
    print(f"{len(files)} samples files of {n} samples; true samples: energy distance {floor:.4f}")
    print(f"{'solver':8s} {'steps':>6s} {'atol':>8s} {'NFE mean':>9s} {'NFE max':>8s} {'energy distance':>16s}")
    for r in rows:
        print(f"{r['solver']:8s} {r['steps'] or '':>6} {r['atol'] or '':>8} {r['nfe_mean']:9.1f} {r['nfe_max']:8d} "
              f"{r['energy_distance']:16.4f}")
    with open(os.path.join(args.dir, "solvers.json"), "w") as f:
        json.dump({"true_samples_energy_distance": floor, "runs": rows}, f, indent=2)
    fmplots.solvers(os.path.join(args.dir, "solvers.png"), rows, floor)
    print(f"table: {os.path.join(args.dir, 'solvers.json')}; figure: {os.path.join(args.dir, 'solvers.png')}")
    return 0


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main(argv=None):
    p = argparse.ArgumentParser(prog="fm_analyze.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report", help="metrics, metrics.json and figures of one run directory")
    r.add_argument("run_dir")
    r.add_argument("--samples", help="samples file (default RUN_DIR/samples.h5)")
    r.add_argument("--seed", type=int, default=0, help="seed of the fresh true samples")
    r.add_argument("--no-plots", action="store_true")
    r.add_argument("--data", help="dataset file of a data.target = file run (default: its data.file)")
    r.set_defaults(func=report)
    f = sub.add_parser("follow", help="redraw the loss of a running training until it ends")
    f.add_argument("run_dir")
    f.add_argument("--every", type=float, default=2.0, help="seconds between reads (default 2)")
    f.add_argument("--out", help="figure (default RUN_DIR/figures/loss_live.png)")
    f.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (default: never)")
    f.set_defaults(func=follow)
    w = sub.add_parser("sweep", help="one table and one figure of every run under a directory")
    w.add_argument("dir")
    w.add_argument("--seed", type=int, default=0, help="seed of the fresh true samples")
    w.set_defaults(func=sweep)
    v = sub.add_parser("solvers", help="energy distance against function evaluations per solver (jobs/solvers.sh)")
    v.add_argument("dir", help="a directory of samples files of one checkpoint")
    v.add_argument("--checkpoint", help="the checkpoint (default: DIR/../checkpoint.h5)")
    v.add_argument("--seed", type=int, default=0, help="seed of the fresh true samples")
    v.set_defaults(func=solvers)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, KeyError) as e:
        print(f"fm_analyze: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
