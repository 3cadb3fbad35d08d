"""The `defectlens` command: a thin layer over the engine functions.

Commands import what they use when they run, so `defectlens predict --model EXPORT` never loads torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from defectlens import __version__
from defectlens.cli_common import ForceOpt, VerboseOpt, console, parse_settings, run_job, setup_logging
from defectlens.engine.runs import DataSpec
from defectlens.errors import ConfigError, DataError
from defectlens.export.precision import AUROC_TOLERANCE

app = typer.Typer(
    help="Find defects without defect labels: learn what good looks like, then score and localise.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _data_spec(
    data: Path | None, good: Path | None, abnormal: list[Path] | None, masks: Path | None, seed: int
) -> DataSpec:
    if (data is None) == (good is None):
        raise ConfigError(
            "give exactly one of --data (MVTec layout folder) or --good (folder of good images)"
        )
    if data is not None:
        return DataSpec.mvtec(data, seed=seed)
    return DataSpec.folder(good, abnormal or [], masks, seed=seed)


def _operating_point_line(point: dict[str, Any]) -> str:
    """One sentence a quality engineer reads: the policy, how sure the threshold is, what it did."""
    targets = {"false_reject_rate": "rate", "recall": "recall", "quantile": "q"}
    key = targets.get(point["policy"])
    target = f" {point[key]:g}" if key in point else ""
    line = (
        f"threshold {point['threshold']:.4g} ({point['policy']}{target}; {point['method']} on "
        f"{point['n_good']} good scores, {point['scores_from']}): false-reject rate <= "
        f"{point['guaranteed_false_reject_rate']:.2%} at {point['confidence']:.0%} confidence"
    )
    if "calibration_recall" in point:
        n_defective = point["n_defective"]
        line += f"; recall {point['calibration_recall']:.2%} on {n_defective} defective calibration images"
    if "test_false_reject_rate" in point:
        line += (
            f"\non the test set it rejects {point['test_false_reject_rate']:.2%} of good parts and catches "
            f"{point['test_recall']:.2%} of defective ones; recall at fixed false-reject rates: "
            + ", ".join(f"{float(r):.1%} -> {v:.3f}" for r, v in point["recall_at_false_reject_rate"].items())
        )
    return line


def _show_metrics(result: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "image_f1_max",
        "image_f1",
        "threshold",
        "images_per_second",
    ):
        value = result.get(key)
        table.add_row(
            key, "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
        )
    console.print(table)
    if result.get("pixel_note"):
        console.print(f"[yellow]note:[/] {result['pixel_note']}")
    if result.get("per_defect_type_auroc"):
        console.print("image AUROC per defect type: " + json.dumps(result["per_defect_type_auroc"]))
    if result.get("operating_point"):
        point = result["operating_point"]
        console.print("operating point: " + _operating_point_line(point))
        console.print("recall per defect type at it: " + json.dumps(point["test_recall_per_defect_type"]))


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Detector name; see `defectlens models`.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Model setting key=value (value read as JSON), repeatable: --set coreset_ratio=0.05"
    ),
]
HostOpt = Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")]
PortOpt = Annotated[int, typer.Option(help="TCP port.")]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(envvar="DEFECTLENS_API_KEY", help="Require this key (X-API-Key) on all but /v1/health."),
]
MqttOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--mqtt",
        help="Publish each result to mqtt://[user:pass@]HOST[:PORT]/TOPIC (QoS 1, spooled), repeatable.",
    ),
]
WebhookOpt = Annotated[
    list[str] | None,
    typer.Option("--webhook", help="POST each result as JSON to this URL (retried, spooled), repeatable."),
]
OutFoldersOpt = Annotated[
    list[Path] | None,
    typer.Option("--out", "-o", help="Append results to DIR/predictions.jsonl with overlays, repeatable."),
]
StateOpt = Annotated[
    Path,
    typer.Option("--state", help="Folder of the station state: files scored, messages not yet delivered."),
]
DriftWindowOpt = Annotated[int, typer.Option(help="Drift: how many of the latest scores are compared.")]
DriftPsiOpt = Annotated[float, typer.Option(help="Drift alarm at this population stability index.")]
DriftKsOpt = Annotated[
    float, typer.Option(help="Drift alarm below this Kolmogorov-Smirnov p-value (0 turns it off).")
]
DEFAULT_STATE = Path(".defectlens-station")


def _station_outputs(
    calibration: Any,
    store: Any,
    mqtt: list[str] | None,
    webhook: list[str] | None,
    out: list[Path] | None,
    drift_window: int,
    drift_psi: float,
    drift_ks_pvalue: float,
    extra_sinks: tuple = (),
) -> Any:
    """The sinks and drift monitor of `watch` and `serve`; `store` (a `StationStore`) spools."""
    from defectlens.line import DriftLevels, DriftMonitor, Outputs, open_sinks

    drift = DriftMonitor.for_calibration(calibration, drift_window, DriftLevels(drift_psi, drift_ks_pvalue))
    return Outputs([*extra_sinks, *open_sinks(store, mqtt, webhook, out)], store, drift)


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create.")],
    model: ModelOpt = "patchcore",
    data: Annotated[
        Path | None,
        typer.Option(help="Dataset in MVTec AD layout (train/good, test/<type>, ground_truth/<type>)."),
    ] = None,
    good: Annotated[Path | None, typer.Option(help="Folder of good images (instead of --data).")] = None,
    abnormal: Annotated[
        list[Path] | None, typer.Option(help="Folder of defective images for testing; repeatable.")
    ] = None,
    masks: Annotated[
        Path | None, typer.Option(help="Folder of masks named like the defective images.")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            help="Working resolution: the side images are resized to (default 256); the model input "
            "unless --tile-size is given."
        ),
    ] = None,
    resize: Annotated[
        str | None, typer.Option(help="'squash' (plain resize) or 'pad' (keep aspect ratio).")
    ] = None,
    tile_size: Annotated[
        int | None,
        typer.Option(
            help="Cut the working resolution into tiles of this side; the model sees tiles (docs/tiling.md)."
        ),
    ] = None,
    tile_overlap: Annotated[
        float | None,
        typer.Option(help="Share of a tile's side that neighbouring tiles overlap (default 0.25)."),
    ] = None,
    roi: Annotated[
        str | None,
        typer.Option(
            help="Region of interest: a mask image (white = inspect) or 'auto' (the training images' "
            "foreground)."
        ),
    ] = None,
    backbone: Annotated[
        str | None, typer.Option(help="timm backbone name (default tf_efficientnet_lite0).")
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Backbone ImageNet weight file (.pth/.safetensors).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the validation split and the model.")] = 0,
    device: Annotated[str | None, typer.Option(help="'auto', 'cpu' or 'cuda'.")] = None,
    false_reject_rate: Annotated[
        float | None,
        typer.Option(help="Share of good parts the line may reject (the default policy, 0.01)."),
    ] = None,
    recall: Annotated[
        float | None,
        typer.Option(help="Share of defective parts to catch; needs labelled defects in DIR/val/<type>/."),
    ] = None,
    threshold_policy: Annotated[
        str | None,
        typer.Option(help="false_reject_rate (default), recall, quantile or f1 (see `defectlens models`)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="A fixed raw image threshold instead of a calibrated one.")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Named settings of the model, e.g. 'paper'; --set and options override them."),
    ] = None,
    settings: SetOpt = None,
    config: Annotated[Path | None, typer.Option(help="JSON file of model settings (a run's params).")] = None,
    force: ForceOpt = False,
    resume: Annotated[
        bool,
        typer.Option(help="Continue an interrupted training in --out (same model, settings and data)."),
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Fit a detector on good images and save it to a run folder.

    Examples:

        defectlens train --model patchcore --data ../shared/data/mtd/magnetic_tile --out runs/tile

        defectlens train -m padim --good ok/ --abnormal scratch/ --out runs/mine --set n_features=80

        defectlens train -m stfpm --data ../shared/data/mtd/magnetic_tile --out runs/st --resume

        defectlens train --data parts/ --out runs/parts --false-reject-rate 0.005

        defectlens train -m stfpm --preset paper --data ../shared/data/mtd/magnetic_tile --out runs/paper
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.engine.train import train

        params = parse_settings(settings, config)
        params.update(_policy_settings(false_reject_rate, recall, threshold_policy))
        common = {
            "image_size": image_size,
            "resize": resize,
            "tile_size": tile_size,
            "tile_overlap": tile_overlap,
            "roi": str(Path(roi).resolve()) if roi not in (None, "auto") else roi,
            "backbone": backbone,
            "device": device,
            "seed": seed,
        }
        params.update({k: v for k, v in common.items() if v is not None})
        if weights is not None:
            params["weights"] = str(weights.resolve())
        spec = _data_spec(data, good, abnormal, masks, seed)
        result = train(
            model, spec, out, params, force=force, resume=resume, threshold=threshold, preset=preset
        )
        console.print(
            f"fitted [bold]{model}[/] in {result.info.fit_seconds:.1f} s on {result.info.n_train} images"
        )
        console.print(
            "operating point: " + _operating_point_line(result.detector.calibration.operating_point())
        )
        if result.hint:
            console.print(f"[yellow]hint:[/] {result.hint}")
        console.print(f"run folder: {result.run}   next: defectlens test --run {result.run}")

    run_job(job)


def _policy_settings(
    false_reject_rate: float | None, recall: float | None, policy: str | None
) -> dict[str, Any]:
    """Model settings for the operating-point options; a rate or recall implies its policy."""
    if false_reject_rate is not None and recall is not None:
        raise ConfigError("give one of --false-reject-rate or --recall: each sets the operating point")
    implied = (
        "false_reject_rate" if false_reject_rate is not None else "recall" if recall is not None else None
    )
    if policy is not None and implied is not None and policy != implied:
        raise ConfigError(f"--threshold-policy {policy} contradicts --{implied.replace('_', '-')}")
    values = {"threshold_policy": policy or implied, "false_reject_rate": false_reject_rate, "recall": recall}
    return {k: v for k, v in values.items() if v is not None}


@app.command("test")
def test_command(
    run: Annotated[Path, typer.Option("--run", "-r", help="Run folder written by `defectlens train`.")],
    data: Annotated[
        Path | None, typer.Option(help="Evaluate on this MVTec-layout dataset instead of the run's.")
    ] = None,
    report: Annotated[
        bool, typer.Option(help="Write the report folder with one picture per test image.")
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the run's metrics.json and report/.")
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate a run on its test split: prints metrics, writes metrics.json and report/.

    Example:

        defectlens test --run runs/tile
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.engine.test import evaluate_run

        spec = DataSpec.mvtec(data) if data else None
        result = evaluate_run(run, spec, report=report, force=force)
        _show_metrics(result, f"{run}: {result['n_images']} test images")
        console.print(f"metrics: {run / 'metrics.json'}" + (f"   report: {run / 'report'}" if report else ""))

    run_job(job)


@app.command("predict")
def predict_command(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for predictions.jsonl, masks and overlays.")
    ],
    run: Annotated[
        Path | None, typer.Option("--run", "-r", help="Run folder written by `defectlens train` (torch).")
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", help="Folder written by `defectlens export` (runs without torch)."),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="For --model: auto, onnxruntime, openvino or torchscript.")
    ] = "auto",
    task: Annotated[str, typer.Option(help="classification, segmentation or detection.")] = "segmentation",
    min_area: Annotated[
        int, typer.Option(help="Smallest box area in model-input pixels for detection.")
    ] = 16,
    engine: Annotated[
        str, typer.Option(help="'local' (this process) or 'ray' (Parquet shards, millions of images).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray: an existing cluster (ray://host:10001 or auto); default local.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Ray: model copies, one CPU each.")] = 2,
    shard_size: Annotated[
        int, typer.Option(help="Ray: images per Parquet shard (the unit of resume).")
    ] = 10_000,
    outputs: Annotated[
        str, typer.Option(help="What to write: jsonl (always), overlay, mask; 'jsonl' alone is fastest.")
    ] = "jsonl,overlay,mask",
    threads: Annotated[int, typer.Option(help="Threads decoding images and writing pictures.")] = 2,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score new images; writes predictions.jsonl (one JSON object per image) and pictures. A file that
    cannot be read gets a line with its `error`; the others are scored, and the exit code is 1.

    With `--engine ray`, INPUTS may also be globs or .txt/.csv lists of paths; the output is Parquet
    shards plus manifest.json, and a re-run skips finished shards.

    Examples:

        defectlens predict --run runs/tile new_parts/ --out preds --task segmentation

        defectlens predict --model exports/tile-onnx part_17.png --out preds --task detection --force

        defectlens predict --model exports/tile-onnx --engine ray all_images.txt --out scored --workers 8
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.engine.predict import open_scorer, predict_images

        if (run is None) == (model_dir is None):
            raise ConfigError("give exactly one of --run (a training run) or --model (an exported model)")
        if engine not in ("local", "ray"):
            raise ConfigError(f"engine must be 'local' or 'ray', got '{engine}'")
        if engine == "ray":
            from defectlens.engine.batch import predict_on_ray

            manifest = predict_on_ray(
                run or model_dir,
                inputs,
                out,
                workers,
                address,
                shard_size,
                task=task,
                backend=backend,
                force=force,
            )
            done = sum(s["rows"] for s in manifest["shards"].values())
            console.print(
                f"{done} of {manifest['images']} images scored -> {out / 'shards'} ({out / 'manifest.json'})"
            )
            return
        scorer = open_scorer(run or model_dir, backend=backend)
        path = predict_images(
            scorer, inputs, out, task, min_area, force, outputs=outputs.split(","), workers=threads
        )
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        n_anomalous = sum(entry.get("label") == "anomalous" for entry in entries)
        failed = [entry for entry in entries if "error" in entry]
        console.print(f"{len(entries)} images, {n_anomalous} anomalous -> {path}")
        if failed:
            raise DataError(
                f"{len(failed)} of {len(entries)} images could not be scored (lines with 'error' in {path}); "
                f"the first: {failed[0]['error']}"
            )

    run_job(job)


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Option("--run", "-r", help="Run folder written by `defectlens train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the exported model to.")],
    format: Annotated[str, typer.Option("--format", "-f", help="onnx, openvino or torchscript.")] = "onnx",
    precision: Annotated[
        str,
        typer.Option(
            help="fp32; fp16 (half-precision weights) or int8 (convolutions quantised, calibrated on the "
            "run's good images) for onnx and openvino."
        ),
    ] = "fp32",
    auroc_tolerance: Annotated[
        float,
        typer.Option(
            help="fp16/int8: refuse the export if its image AUROC on the run's test images moves more."
        ),
    ] = AUROC_TOLERANCE,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export a trained model for deployment: the graph, plus defectlens.json (input, thresholds).

    The export is checked against the torch model before this command returns: in fp32 its scores must
    match; in fp16 or int8 its image AUROC on the run's labelled test images must stay within
    --auroc-tolerance of the torch model's. An export that fails is not written.

    Examples:

        defectlens export --run runs/tile --format onnx --out exports/tile-onnx

        defectlens export --run runs/tile --format openvino --precision int8 --out exports/tile-ov-int8
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.export import export_run

        path = export_run(run, out, format, force=force, precision=precision, auroc_tolerance=auroc_tolerance)
        console.print(
            f"exported {run} as {format} ({precision}) -> {path}   "
            f"next: defectlens predict --model {path} IMAGES"
        )

    run_job(job)


@app.command("serve")
def serve_command(
    model_dir: Annotated[
        Path | None, typer.Option("--model", help="Folder written by `defectlens export` (no torch).")
    ] = None,
    run: Annotated[Path | None, typer.Option("--run", "-r", help="Run folder (serves with torch).")] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="DEFECTLENS_API_KEY", help="Require this key (X-API-Key) on all but /v1/health."),
    ] = None,
    backend: Annotated[str, typer.Option(help="For --model: auto, onnxruntime, openvino.")] = "auto",
    max_batch: Annotated[
        int, typer.Option(help="Most images per model call; 1 turns micro-batching off.")
    ] = 8,
    max_wait_ms: Annotated[float, typer.Option(help="How long a batch waits to fill, in ms.")] = 5.0,
    max_queue: Annotated[int, typer.Option(help="Most waiting images before answering 503.")] = 64,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body in MB.")] = 20.0,
    max_megapixels: Annotated[float, typer.Option(help="Largest image in megapixels.")] = 50.0,
    mqtt: MqttOpt = None,
    webhook: WebhookOpt = None,
    out: OutFoldersOpt = None,
    state: StateOpt = DEFAULT_STATE,
    drift_window: DriftWindowOpt = 200,
    drift_psi: DriftPsiOpt = 0.25,
    drift_ks_pvalue: DriftKsOpt = 0.001,
    verbose: VerboseOpt = False,
) -> None:
    """Serve a model over HTTP: POST /v1/predict, GET /v1/health, GET /v1/model, GET /v1/metrics
    (Prometheus), GET /v1/drift, docs at /docs. Results also go to --mqtt, --webhook and --out.

    Examples:

        defectlens serve --model exports/tile-onnx

        defectlens serve --run runs/tile --port 8080 --api-key s3cret --mqtt mqtt://gateway:1883/line1
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.serve import Limits, create_app, open_served_model

        if (run is None) == (model_dir is None):
            raise ConfigError("give exactly one of --model (an exported model) or --run (a training run)")
        served = open_served_model(model_dir or run, backend)
        limits = Limits(int(max_upload_mb * 1e6), int(max_megapixels * 1e6))
        from defectlens.line import StationStore

        store = StationStore(state) if (mqtt or webhook) else None
        outputs = _station_outputs(
            served.calibration, store, mqtt, webhook, out, drift_window, drift_psi, drift_ks_pvalue
        )
        application = create_app(served, api_key, limits, max_batch, max_wait_ms, max_queue, outputs=outputs)
        console.print(
            f"serving {served.info['model']} ({served.info['runtime']}) on http://{host}:{port}  docs: /docs"
        )
        _serve(application, host, port, verbose)

    run_job(job)


def _serve(application: Any, host: str, port: int, verbose: bool) -> None:
    import uvicorn

    uvicorn.run(application, host=host, port=port, log_level="info" if verbose else "warning")


@app.command("watch")
def watch_command(
    source: Annotated[
        str,
        typer.Argument(help="A folder, a camera index (0), a video file, or a stream URL (rtsp://...)."),
    ],
    run: Annotated[Path | None, typer.Option("--run", "-r", help="Run folder (scores with torch).")] = None,
    model_dir: Annotated[
        Path | None, typer.Option("--model", help="Folder written by `defectlens export` (no torch).")
    ] = None,
    mqtt: MqttOpt = None,
    webhook: WebhookOpt = None,
    out: OutFoldersOpt = None,
    every: Annotated[int, typer.Option(help="Camera or video: score every N-th frame.")] = 1,
    task: Annotated[str, typer.Option(help="classification, segmentation or detection.")] = "detection",
    min_area: Annotated[int, typer.Option(help="Smallest box area in pixels for detection.")] = 16,
    backend: Annotated[str, typer.Option(help="For --model: auto, onnxruntime, openvino.")] = "auto",
    max_batch: Annotated[int, typer.Option(help="Most waiting files scored in one model call.")] = 8,
    state: StateOpt = DEFAULT_STATE,
    settle: Annotated[
        float, typer.Option(help="Folder: seconds a file must stay unchanged (without a close) to be read.")
    ] = 0.5,
    idle_exit: Annotated[
        float | None, typer.Option(help="Stop after this many seconds with nothing new (default: never).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (path /metrics).")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics endpoint.")] = "127.0.0.1",
    drift_window: DriftWindowOpt = 200,
    drift_psi: DriftPsiOpt = 0.25,
    drift_ks_pvalue: DriftKsOpt = 0.001,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print a line per result.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score parts as they arrive: new files in a folder (each once, across restarts) or frames of a
    camera, video or stream; publish each result to MQTT, webhooks and folders; watch for drift.
    Stops on Ctrl-C or SIGTERM, after delivering what it can.

    Examples:

        defectlens watch /data/camera1 --model exports/tile-onnx --mqtt mqtt://plc-gateway:1883/line1/parts

        defectlens watch rtsp://10.0.0.7/stream --run runs/tile --every 5 --out station-results
    """
    setup_logging(verbose)

    def job() -> None:
        import signal
        import threading

        from defectlens.engine.predict import open_scorer
        from defectlens.line import ConsoleSink, Station, StationStore, open_source
        from defectlens.post.tasks import check_task

        if (run is None) == (model_dir is None):
            raise ConfigError("give exactly one of --run (a training run) or --model (an exported model)")
        scorer = open_scorer(run or model_dir, backend=backend)
        store = StationStore(state)
        watched = open_source(source, store, every, settle)
        printer = (
            ()
            if quiet
            else (
                ConsoleSink(lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)),
            )
        )
        outputs = _station_outputs(
            scorer.calibration, store, mqtt, webhook, out, drift_window, drift_psi, drift_ks_pvalue, printer
        )
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, metrics_host, registry=outputs.metrics.registry)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        console.print(f"watching {watched.id} with {scorer.name} ({scorer.runtime}); Ctrl-C stops")
        station = Station(scorer, outputs, check_task(task), min_area, max_batch)
        try:
            scored = station.run(watched, stop, idle_exit)
        finally:
            outputs.close()
        console.print(f"{scored} parts scored; drift alarm {'raised' if outputs.drift.alarm else 'off'}")

    run_job(job)


@app.command("review")
def review_command(
    run: Annotated[Path, typer.Option("--run", "-r", help="Run folder, after `defectlens test`.")],
    predictions: Annotated[
        Path | None,
        typer.Option(help="Review a `defectlens predict` output folder instead of the run's test results."),
    ] = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    api_key: ApiKeyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Open the review page on a run: results sorted by score, a threshold slider, and buttons to mark
    images "actually good" / "actually defective" (stored in RUN/feedback.sqlite).

    Examples:

        defectlens review --run runs/tile            # then open http://127.0.0.1:8000

        defectlens refit --run runs/tile --with-feedback
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.serve import create_app, open_served_model
        from defectlens.serve.review import ReviewSource

        source = ReviewSource.open(run, predictions)
        application = create_app(open_served_model(run), api_key, review=source)
        console.print(f"reviewing {len(source.items)} images of {run} on http://{host}:{port}")
        _serve(application, host, port, verbose)

    run_job(job)


@app.command("refit")
def refit_command(
    run: Annotated[Path, typer.Option("--run", "-r", help="Run folder with marks from `defectlens review`.")],
    with_feedback: Annotated[
        bool, typer.Option("--with-feedback", help="Fold the review marks into the model.")
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Fold review marks back into a run: "actually good" images join the training data (PatchCore grows its
    memory bank, no full refit), the threshold is recalibrated with the "actually defective" ones, and
    RUN/feedback.json records the metrics before and after on the unmarked test images.

    Example:

        defectlens refit --run runs/tile --with-feedback
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.engine.feedback import refit_with_feedback

        if not with_feedback:
            raise ConfigError("refit folds review marks into the model: pass --with-feedback")
        entry = refit_with_feedback(run)
        console.print(f"{entry['marked_good']} good and {entry['marked_defective']} defective marks applied")
        for when in ("before", "after"):
            metrics = entry[when] or {}
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            console.print(f"{when:>6}: {shown or 'no labelled test images left to evaluate'}")
        console.print(
            f"previous model kept as {run / entry['previous_checkpoint']}; history in {run / 'feedback.json'}"
        )

    run_job(job)


@app.command("info")
def info_command(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Detector name(s); default: all.")
    ] = None,
    run: Annotated[Path | None, typer.Option("--run", "-r", help="Measure this trained run instead.")] = None,
    backbone: Annotated[str | None, typer.Option(help="timm backbone name.")] = None,
    image_size: Annotated[int, typer.Option(help="Model input side in pixels.")] = 256,
    train_images: Annotated[
        int, typer.Option(help="Training-set size that shapes fitted buffers (memory bank).")
    ] = 1000,
    settings: SetOpt = None,
) -> None:
    """Model complexity, measured on the real torch module: parameters, size on disk, GFLOPs per image.

    Examples:

        defectlens info

        defectlens info --model patchcore --backbone tf_efficientnet_lite1 --image-size 320

        defectlens info --run runs/tile
    """

    def job() -> None:
        from defectlens.models import create, list_detectors, load
        from defectlens.models.complexity import measure

        table = Table(title=f"complexity at {image_size}x{image_size}" if run is None else str(run))
        for column in ("model", "parameters", "saved buffer values", "size (MB)", "GFLOPs / image"):
            table.add_column(column, justify="left" if column == "model" else "right")
        if run is not None:
            detector = load(run / "model.pt")
            rows = [(detector.name, detector.module_, detector.input_resize.size)]
        else:
            params = parse_settings(settings, None)
            if backbone:
                params["backbone"] = backbone
            rows = []
            for name in model or list_detectors():
                detector = create(name, image_size=image_size, **params)
                rows.append((name, detector.shaped_module(train_images), detector.input_resize.size))
        for name, module, size in rows:
            c = measure(module, size)
            table.add_row(
                name, f"{c.parameters:,}", f"{c.buffer_values:,}", f"{c.size_mb:.1f}", f"{c.gflops:.2f}"
            )
        console.print(table)
        if run is None:
            console.print(f"fitted buffers sized as after training on {train_images} images (--train-images)")

    run_job(job)


@app.command("demo")
def demo_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run folder; a free name next to it is used if it exists.")
    ] = Path("runs/demo"),
    model: ModelOpt = "patchcore",
    cell_type: Annotated[str, typer.Option(help="ELPV cells: mono, poly or both.")] = "mono",
    verbose: VerboseOpt = False,
) -> None:
    """Train and test on the embedded ELPV solar-cell data: no download, a few minutes on 2 CPU cores.

    The data (2,624 electroluminescence images of solar cells, CC BY-NC-SA 4.0, Buerhop-Lutz et al. 2018)
    ships in the `elpv-dataset` package. Training uses good cells only; the test set holds held-out good
    cells and cells that experts rated defective with certainty.

    Example:

        defectlens demo
    """
    setup_logging(verbose)
    target, n = out, 1
    while target.exists():
        n += 1
        target = out.with_name(f"{out.name}-{n}")

    def job() -> None:
        from defectlens.engine.test import evaluate_run
        from defectlens.engine.train import train

        console.print(f"[bold]defectlens demo[/]: {model} on ELPV {cell_type} cells -> {target}")
        result = train(model, DataSpec.elpv(cell_type), target)
        console.print(f"fitted in {result.info.fit_seconds:.1f} s on {result.info.n_train} good cells")
        metrics = evaluate_run(target)
        _show_metrics(
            metrics,
            f"ELPV {cell_type}: {metrics['n_images']} test cells ({metrics['n_anomalous']} defective)",
        )
        console.print(f"report: {target / 'report'}   (ROC curve, score histogram, one picture per cell)")

    run_job(job)


CALIBRATION_SCORES = {
    "out-of-fold": "every good training image scored by the shipped model without that image "
    "(out_of_fold='leave-image-out'), or by k fold models on cached features (out_of_fold='folds')",
    "held-out": "good images held out of training (10 %, or the DIR/val/ folder)",
    "held-out or refits": "good images held out of training (10 %, or the DIR/val/ folder); when fewer "
    "than 30 are held out, calibration_refits models trained on folds of all of them",
}


@app.command("models")
def models_command() -> None:
    """List the detectors and their settings with defaults.

    Example:

        defectlens models
    """
    from defectlens.models import detector_class, list_detectors

    for name in list_detectors():
        cls = detector_class(name)
        console.print(f"[bold]{name}[/]: {(cls.__doc__ or '').strip().splitlines()[0]}")
        console.print(f"    calibration: {CALIBRATION_SCORES[cls.calibration_scores]}")
        for key, default in cls().get_params().items():  # constructors only store, so this is the defaults
            console.print(f"    {key} = {default!r}")
        for preset, values in cls.presets.items():
            console.print(f"    --preset {preset}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(__version__)
        raise typer.Exit()


from defectlens.audio.cli import audio_app  # noqa: E402 (mounted last; its commands import what they use)

app.add_typer(audio_app, name="audio", help="Machine-sound anomaly detection: train, test, predict on audio.")

from defectlens.augment.cli import augment_app  # noqa: E402 (its commands import what they use)

app.add_typer(augment_app, name="augment", help="GAN data augmentation: train, generate, copy check.")
