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
    buffer_values: values of saved buffers (memory bank, Gaussians, batch-norm statistics).
    size_mb: bytes of its saved state_dict / 1e6 (what a checkpoint or export carries).
    gflops: floating-point operations per image at the input size / 1e9, counted by
        torch.utils.flop_counter (matrix products and convolutions, 2 per multiply-add), plus what
        submodules report through `untracked_flops()` for work done outside torch (faiss search).
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
    state = module.state_dict()
    torch.save(state, buffer)
    device = next(iter(module.buffers()), torch.empty(0)).device
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(torch.rand(1, 3, *input_size, device=device))
    untracked = sum(m.untracked_flops() for m in module.modules() if hasattr(m, "untracked_flops"))
    parameters = sum(p.numel() for p in module.parameters())
    return Complexity(
        parameters=parameters,
        buffer_values=sum(v.numel() for v in state.values()) - parameters,  # persistent buffers only
        size_mb=round(buffer.getbuffer().nbytes / 1e6, 2),
        gflops=round((counter.get_total_flops() + untracked) / 1e9, 3),
    )
