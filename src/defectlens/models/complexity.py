"""Model complexity measured on the module itself: parameters, size on disk and GFLOPs per image."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Complexity:
    """Attributes:
    parameters: learned weights (parameters) of the module.
    buffer_values: values of fitted buffers (memory bank, Gaussians, statistics).
    size_mb: bytes of its saved state_dict / 1e6 (what a checkpoint or export carries).
    gflops: floating-point operations per image at the input size / 1e9, counted by
        torch.utils.flop_counter (matrix products and convolutions, 2 per multiply-add).
    """

    parameters: int
    buffer_values: int
    size_mb: float
    gflops: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def measure(module: nn.Module, input_size: tuple[int, int]) -> Complexity:
    """Count parameters, serialise the state to memory and run one image through a FLOP counter."""
    module = module.eval()
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    device = next(iter(module.buffers()), torch.empty(0)).device
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(torch.rand(1, 3, *input_size, device=device))
    return Complexity(
        parameters=sum(p.numel() for p in module.parameters()),
        buffer_values=sum(b.numel() for b in module.buffers()),
        size_mb=round(buffer.getbuffer().nbytes / 1e6, 2),
        gflops=round(counter.get_total_flops() / 1e9, 3),
    )
