"""Measure the operating point a line gets: false-reject rate and recall on MTD's test set at the
calibrated threshold, for the default policy (false-reject rate 1 %) and for the rule it replaced.

    python benchmarks/operating_point.py --data ../shared/data/mtd/magnetic_tile \
        --out docs/raw/operating_point --set autoencoder:max_epochs=15

Configurations, each fitted once and scored on all 582 test images:
- `full`: the MVTec layout as loaded by `defectlens train` (out-of-fold detectors calibrate on all 762 good
  training tiles; held-out ones train on 686 and calibrate on 76);
- `75 images`: a fixed random 75 of the good training tiles (numpy seed 0), a new part's typical set;
- `before`: the rule of defectlens before this change, the 0.99 quantile of the 76 held-out tiles
  (`threshold_policy=quantile`, the model trained on the other 686).
It also runs the tail extrapolation on simulated scores (normal, Gumbel and log-normal; 200 draws of 75 and
150 scores) to show the false-reject rate it gives at a 1 % target.

Each fitted configuration appends a row to OUT/results.jsonl as soon as it is done and keeps its good
calibration scores in OUT/scores/, so the grid can be run in parts (e.g. one model, or one setting such as
`--set patchcore:out_of_fold="folds"`, at a time). OUT/results.md is rebuilt from every row of
OUT/results.jsonl (a later row replaces an earlier one of the same model, configuration and settings),
with the rank agreement of the good scores of full runs that differ only in their settings. The
recall/false-reject picture of each full run with default settings is OUT/<model>.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import time
from pathlib import Path

import numpy as np

SIMULATED = ("normal", "gumbel", "lognormal")


def run_config(model: str, config: str, data: Path, params: dict, out: Path) -> dict:
    import torch

    from defectlens.data import load_mvtec
    from defectlens.engine import score_records
    from defectlens.models import create
    from defectlens.reports import save_operating_curve

    torch.set_num_threads(2)
    splits = load_mvtec(data, seed=0)
    extra = {"threshold_policy": "quantile", "threshold_quantile": 0.99} if config == "before" else {}
    detector = create(model, seed=0, device="cpu", **params, **extra)
    start = time.perf_counter()
    if config == "75 images":
        good = splits.train + splits.val
        chosen = np.random.default_rng(0).choice(len(good), size=75, replace=False)
        detector.fit([good[i] for i in sorted(chosen)])
    elif config == "before":
        detector.fit(splits.train, val=splits.val)
    else:
        detector.fit(splits)
    fit_seconds = time.perf_counter() - start
    scored = score_records(detector, splits.test)
    calibration = detector.calibration_
    threshold = calibration.image_threshold
    row = {
        "model": model,
        "config": config,
        "params": params,
        **calibration.operating_point(),
        **scored.at_threshold(threshold),
        "image_auroc": round(scored.evaluate(threshold)["image_auroc"], 4),
        "fit_seconds": round(fit_seconds, 1),
    }
    # File names keep letters, digits and "=._-" of the settings (a list of backbones has quotes, spaces).
    name = re.sub(r"[^A-Za-z0-9=._-]+", "_", f"{model}-{config.replace(' ', '-')}-{_settings_key(params)}")
    stem = out / "scores" / name
    stem.parent.mkdir(exist_ok=True)
    for key, values in (
        ("good_scores_file", calibration.good_scores),
        ("test_good_scores_file", scored.raw_scores[scored.labels == 0]),
    ):
        path = stem.with_name(f"{stem.name}-{key.removesuffix('_scores_file').replace('_', '-')}.json")
        path.write_text(json.dumps(np.asarray(values).tolist()))
        row[key] = str(path.relative_to(out))
    if config == "full" and not params:
        save_operating_curve(
            scored.labels,
            scored.raw_scores,
            threshold,
            out / f"{model}.png",
            target_rate=row.get("rate"),
            title=f"{model} on MTD: recall against false-reject rate",
        )
    return row


def _settings_key(params: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"


def shift(rows: list[dict], out: Path) -> list[str]:
    """How the good calibration scores compare with the good test scores (same model): medians, 99th
    percentiles and a two-sided Mann-Whitney test, for the rows that kept both."""
    from scipy import stats

    lines = []
    for r in rows:
        if "test_good_scores_file" not in r:
            continue
        calibration, test = (
            np.array(json.loads((out / r[k]).read_text()))
            for k in ("good_scores_file", "test_good_scores_file")
        )
        p = stats.mannwhitneyu(calibration, test).pvalue
        lines.append(
            f"- {r['model']} / {r['config']} ({_settings_key(r['params'])}): calibration good scores "
            f"(n={calibration.size}) median {np.median(calibration):.4g}, 99th percentile "
            f"{np.quantile(calibration, 0.99):.4g}; test good scores (n={test.size}) median "
            f"{np.median(test):.4g}, 99th percentile {np.quantile(test, 0.99):.4g}; Mann-Whitney p = {p:.2g}."
        )
    return lines


def agreement(rows: list[dict], out: Path) -> list[str]:
    """Spearman rank correlation and threshold of the good scores of each model's full runs, pairwise."""
    from scipy import stats

    full = [r for r in rows if r["config"] == "full"]
    lines = []
    for i, a in enumerate(full):
        for b in full[i + 1 :]:
            if a["model"] != b["model"]:
                continue
            scores_a, scores_b = (json.loads((out / r["good_scores_file"]).read_text()) for r in (a, b))
            rho = stats.spearmanr(scores_a, scores_b).statistic
            lines.append(
                f"- {a['model']}: {a['scores_from']} against {b['scores_from']}: Spearman {rho:.3f} over "
                f"{len(scores_a)} good images; thresholds {a['threshold']:.4g} against {b['threshold']:.4g}, "
                f"median good score {np.median(scores_a):.4g} against {np.median(scores_b):.4g}."
            )
    return lines


def simulate(n_draws: int = 200) -> list[dict]:
    """True false-reject rate of FalseRejectThreshold(0.01) on simulated good scores of known distribution."""
    from scipy import stats

    from defectlens.post.threshold import FalseRejectThreshold

    logging.getLogger("defectlens").setLevel(logging.ERROR)
    distributions = {"normal": stats.norm(), "gumbel": stats.gumbel_r(), "lognormal": stats.lognorm(0.5)}
    rows = []
    for name in SIMULATED:
        dist = distributions[name]
        for n in (75, 150):
            rates = np.array(
                [
                    dist.sf(FalseRejectThreshold(0.01).fit(dist.rvs(size=n, random_state=s)).value_)
                    for s in range(n_draws)
                ]
            )
            rows.append(
                {
                    "distribution": name,
                    "n_good": n,
                    "mean_rate": round(float(rates.mean()), 4),
                    "median_rate": round(float(np.median(rates)), 4),
                    "p90_rate": round(float(np.quantile(rates, 0.9)), 4),
                }
            )
    return rows


def markdown(
    rows: list[dict], agreeing: list[str], shifted: list[str], simulated: list[dict], header: str
) -> str:
    lines = [
        header,
        "",
        "| model | calibration | settings | policy | method | good scores | threshold "
        "| guaranteed FRR (95 %) | test FRR | test recall | recall @ FRR 0.1 % / 1 % / 5 % "
        "| image AUROC | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fixed = " / ".join(f"{v:.3f}" for v in r["recall_at_false_reject_rate"].values())
        target = r.get("rate", r.get("q", ""))
        lines.append(
            f"| {r['model']} | {r['config']}: {r['scores_from']} | {_settings_key(r['params'])} "
            f"| {r['policy']} {target} | {r['method']} "
            f"| {r['n_good']} | {r['threshold']:.4g} | {r['guaranteed_false_reject_rate']:.3f} "
            f"| {r['test_false_reject_rate']:.3f} | {r['test_recall']:.3f} | {fixed} "
            f"| {r['image_auroc']:.4f} | {r['fit_seconds']} |"
        )
    lines += ["", "Recall per defect type at the operating point:", ""]
    for r in rows:
        label = f"{r['model']} / {r['config']} ({_settings_key(r['params'])})"
        lines.append(f"- {label}: {json.dumps(r['test_recall_per_defect_type'])}")
    if agreeing:
        lines += ["", "Agreement of the good calibration scores of full runs:", "", *agreeing]
    if shifted:
        lines += ["", "Good calibration scores against good test scores:", "", *shifted]
    lines += [
        "",
        "Tail extrapolation on simulated good scores (FalseRejectThreshold(0.01), 200 draws each): the true",
        "false-reject rate of the threshold it sets.",
        "",
        "| distribution | good scores | mean | median | 90th percentile |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['distribution']} | {s['n_good']} | {s['mean_rate']:.4f} | {s['median_rate']:.4f} "
        f"| {s['p90_rate']:.4f} |"
        for s in simulated
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd/magnetic_tile"))
    parser.add_argument("--out", type=Path, default=Path("docs/raw/operating_point"))
    parser.add_argument(
        "--models",
        nargs="*",
        default=["patchcore", "padim", "autoencoder"],
        help="models to fit; none (`--models` alone) only rebuilds results.md from results.jsonl",
    )
    parser.add_argument("--configs", nargs="+", default=["full", "75 images", "before"])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MODEL:KEY=VALUE",
        help="a model setting, value read as JSON (e.g. autoencoder:max_epochs=15)",
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"MTD not found at {args.data}: this benchmark needs ../shared/data/mtd (skipped)")
    args.out.mkdir(parents=True, exist_ok=True)
    params: dict[str, dict] = {m: {} for m in args.models}
    for item in args.set:
        model, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        params.setdefault(model, {})[key] = json.loads(value)
    log_path = args.out / "results.jsonl"
    for model in args.models:
        for config in args.configs:
            row = {
                **run_config(model, config, args.data, params[model], args.out),
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.node()}, {platform.machine()}, torch threads 2",
            }
            print(json.dumps(row), flush=True)
            with log_path.open("a") as log:
                log.write(json.dumps(row) + "\n")
    latest = {}
    for line in log_path.read_text().splitlines():
        row = json.loads(line)
        latest[(row["model"], row["config"], _settings_key(row["params"]))] = row
    rows = list(latest.values())
    machines = sorted({f"{r['date']} on {r['machine']}" for r in rows})
    header = f"Runs: {'; '.join(machines)}; data {args.data}."
    (args.out / "results.md").write_text(
        markdown(rows, agreement(rows, args.out), shift(rows, args.out), simulate(), header)
    )
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
