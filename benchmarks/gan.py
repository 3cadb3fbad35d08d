"""AnoGAN vs f-AnoGAN on one MVTec-layout category, over several seeds: accuracy, training time, speed.

For each seed an f-AnoGAN is trained (the DCGAN, then its encoder); the same trained GAN is then scored
two ways: the encoder (one forward pass) and AnoGAN's latent search (`AnoGAN.from_gan`), so the two
scorers differ only in how they find z. Both are calibrated on the same held-out good images.

    python benchmarks/gan.py --data ../shared/data/mtd/magnetic_tile --seeds 0 1 2 --out docs/gan

Writes OUT/results.jsonl (one line per seed, appended as each finishes; a rerun skips finished seeds),
OUT/samples_seed<N>.png (64 images from the generator), OUT/yardstick.json (the image AUROC of the mean
grey level, a no-learning yardstick) and the markdown table OUT/results.md.

    python benchmarks/gan.py --data ../shared/data/mvtec_screw --epochs 430 --out docs/gan/mvtec_screw
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import describe_machine

SETTINGS = ("image_size", "channels", "width", "latent_dim", "epochs", "encoder_epochs", "batch_size")
SEARCH = ("search_steps", "search_lr", "lam", "search_candidates")


def evaluate(detector, splits, batch_size: int) -> dict:
    """Image AUROC (of the detector's score, and of the residual map's maximum instead), pixel AUROC on
    the test split, and model-only images/s on the resized test images."""
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.metrics import image_auroc, pixel_auroc

    scores, maxima, labels, maps, masks = [], [], [], [], []
    seconds = 0.0
    for batch in loader(as_dataset(splits.test, detector.input_resize), batch_size):
        start = time.perf_counter()
        batch_scores, batch_maps = detector.score_batch(batch.images)
        seconds += time.perf_counter() - start
        scores.append(batch_scores)
        maxima.append(batch_maps.reshape(len(batch_maps), -1).max(axis=1))
        labels.append(batch.labels.numpy())
        for m, mask, geometry in zip(batch_maps, batch.masks, batch.geometries, strict=True):
            maps.append(geometry.crop_content(m))
            masks.append(geometry.crop_content(mask.numpy()) if mask is not None else np.zeros(m.shape, bool))
    labels = np.concatenate(labels)
    return {
        "image_auroc": round(image_auroc(labels, np.concatenate(scores)), 4),
        "image_auroc_map_max": round(image_auroc(labels, np.concatenate(maxima)), 4),
        "pixel_auroc": round(pixel_auroc(masks, maps), 4),
        "images_per_s": round(len(labels) / seconds, 2),
    }


def run_seed(seed: int, args: argparse.Namespace, out: Path) -> dict:
    import torch

    from defectlens.data import load_mvtec
    from defectlens.models import create
    from defectlens.models.gan import AnoGAN
    from defectlens.models.gan.detector import sample_grid
    from defectlens.reports.figures import save_image

    torch.set_num_threads(args.threads)
    splits = load_mvtec(args.data, seed=seed)
    fanogan = create(
        "fanogan",
        image_size=args.image_size,
        channels=args.channels,
        width=args.width,
        latent_dim=args.latent_dim,
        max_epochs=args.epochs,
        encoder_epochs=args.encoder_epochs,
        batch_size=args.batch_size,
        seed=seed,
        device="cpu",
    )
    start = time.perf_counter()
    fanogan.fit(splits, progress=args.progress)
    fit_s = time.perf_counter() - start
    gan_s = sum(h["seconds"] for h in fanogan.history_)
    with torch.inference_mode():
        noise = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(seed))
        save_image(sample_grid(fanogan.module_.generator(noise)), out / f"samples_seed{seed}.png")
    encoder = evaluate(fanogan, splits, args.batch_size)
    search_params = {k: getattr(args, k) for k in SEARCH}
    anogan = AnoGAN.from_gan(fanogan, splits.val, **search_params)
    search = evaluate(anogan, splits, args.batch_size)
    last = fanogan.history_[-1]
    return {
        "seed": seed,
        "data": Path(args.data).name,
        "n_train": len(splits.train),
        "n_test": len(splits.test),
        "gan_train_s": round(gan_s, 1),
        "encoder_train_s": round(fit_s - gan_s, 1),
        "encoder_epochs_run": len(fanogan.encoder_history_),
        "last_epoch": {k: round(v, 4) for k, v in last.items()},
        "fanogan": encoder,
        "anogan": search,
        "settings": {k: getattr(args, k) for k in SETTINGS + SEARCH},
        "machine": describe_machine(),
    }


def save_real_grid(args: argparse.Namespace) -> None:
    """64 training images as the GAN sees them, beside its samples for comparison."""
    import torch

    from defectlens.data import load_mvtec
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.data.transforms import Resize
    from defectlens.models.gan.detector import sample_grid
    from defectlens.models.gan.torch_model import to_gan_range
    from defectlens.reports.figures import save_image

    splits = load_mvtec(args.data, seed=0)
    resize = Resize(args.image_size, "squash")  # as the detectors' default
    images = next(iter(loader(as_dataset(splits.train[::10][:64], resize), 64))).images
    with torch.inference_mode():
        save_image(sample_grid(to_gan_range(images, args.channels)), args.out / "real_images.png")


def grey_level_yardstick(args: argparse.Namespace) -> dict:
    """Image AUROC of two no-learning scores on the test split, at the GAN's input size: each image's mean
    grey level (brighter = more anomalous) and its distance from the training images' mean grey level.
    A detector that is no better than these has learnt global brightness, not defects."""
    from defectlens.data import load_mvtec
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.data.transforms import Resize
    from defectlens.metrics import image_auroc

    splits = load_mvtec(args.data, seed=0)
    resize = Resize(args.image_size, "squash")

    def mean_grey(records) -> tuple[np.ndarray, np.ndarray]:
        batches = list(loader(as_dataset(records, resize), 64))
        means = np.concatenate([b.images.mean(dim=(1, 2, 3)).numpy() for b in batches])
        return means, np.concatenate([b.labels.numpy() for b in batches])

    train_means, _ = mean_grey(splits.train)
    test_means, labels = mean_grey(splits.test)
    good = labels == 0
    return {
        "mean_grey_auroc": image_auroc(labels, test_means),
        "distance_from_training_mean_auroc": image_auroc(labels, np.abs(test_means - train_means.mean())),
        "mean_grey_train": [float(train_means.min()), float(train_means.max())],
        "mean_grey_test_good": [float(test_means[good].min()), float(test_means[good].max())],
        "mean_grey_test_defective": [float(test_means[~good].min()), float(test_means[~good].max())],
    }


def spread(values: list[float]) -> str:
    digits = 3 if max(values) < 10 else 1
    mean = f"{np.mean(values):.{digits}f}"
    return f"{mean} ± {np.std(values):.{digits}f}" if len(values) > 1 else mean


def report(results: list[dict], yardstick: dict, args: argparse.Namespace) -> str:
    settings = results[0]["settings"]
    machines = "; ".join(sorted({r.get("machine", "not recorded") for r in results}))
    ranges = {
        k: "-".join(f"{v:.3f}" for v in yardstick[f"mean_grey_{k}"])
        for k in ("train", "test_good", "test_defective")
    }
    lines = [
        f"Data: `{results[0]['data']}` ({results[0]['n_train']} training images, {results[0]['n_test']} test "
        f"images), seeds {[r['seed'] for r in results]}. Settings: "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + f". Machine: {machines}, torch threads {args.threads}, CPU only.",
        "",
        "| scorer | image AUROC | image AUROC, map max | pixel AUROC | scoring images/s | training s |",
        "|---|---|---|---|---|---|",
    ]
    gan_s = [r["gan_train_s"] for r in results]
    enc_s = [r["encoder_train_s"] for r in results]
    for key, label, train in (
        ("anogan", f"AnoGAN latent search ({settings['search_steps']} steps)", gan_s),
        ("fanogan", "f-AnoGAN encoder (one pass)", [g + e for g, e in zip(gan_s, enc_s, strict=True)]),
    ):
        lines.append(
            f"| {label} | {spread([r[key]['image_auroc'] for r in results])} "
            f"| {spread([r[key]['image_auroc_map_max'] for r in results])} "
            f"| {spread([r[key]['pixel_auroc'] for r in results])} "
            f"| {spread([r[key]['images_per_s'] for r in results])} | {spread(train)} |"
        )
    lines += [
        f"| yardstick: the image's mean grey level (no learning) | {yardstick['mean_grey_auroc']:.3f} "
        "| – | – | – | – |",
        f"| yardstick: distance of the mean grey level from the training images' | "
        f"{yardstick['distance_from_training_mean_auroc']:.3f} | – | – | – | – |",
        "",
        f"Mean grey level (0-1) at {args.image_size} px: training images {ranges['train']}, good test images "
        f"{ranges['test_good']}, defective test images {ranges['test_defective']}.",
    ]
    lines += [
        "",
        "Per seed:",
        "",
        "| seed | AnoGAN image / pixel | f-AnoGAN image / pixel | speed-up |",
        "|---|---|---|---|",
    ]
    for r in results:
        a, f = r["anogan"], r["fanogan"]
        speedup = f["images_per_s"] / a["images_per_s"]
        lines.append(
            f"| {r['seed']} | {a['image_auroc']:.3f} / {a['pixel_auroc']:.3f} "
            f"| {f['image_auroc']:.3f} / {f['pixel_auroc']:.3f} | {speedup:.0f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="../shared/data/mtd/magnetic_tile")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--encoder-epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--search-steps", type=int, default=50)
    parser.add_argument("--search-lr", type=float, default=0.05)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--search-candidates", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/gan"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.jsonl"
    done = {}
    if results_file.exists():
        done = {r["seed"]: r for r in map(json.loads, results_file.read_text().splitlines())}
    for seed in args.seeds:
        if seed in done:
            continue
        result = run_seed(seed, args, args.out)
        print(json.dumps(result), flush=True)
        with results_file.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        done[seed] = result
    save_real_grid(args)
    yardstick = grey_level_yardstick(args)
    (args.out / "yardstick.json").write_text(json.dumps(yardstick, indent=1) + "\n")
    text = report([done[s] for s in args.seeds], yardstick, args)
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
