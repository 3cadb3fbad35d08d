"""The DCASE 2020 Task 2 baseline: a dense autoencoder on five stacked log-mel frames.

As the baseline (Koizumi et al., DCASE 2020): 128 mel bands from a 1024-point FFT with hop 512 and
power 2, `frames`=5 consecutive frames concatenated into a 640-dim vector (one vector per frame
position), a 640-128-128-128-128-8-128-128-128-128-640 network with batch norm and ReLU after every
hidden layer, MSE loss, Adam with lr 1e-3, batch 512, 100 epochs. The anomaly score of a window is its
mean squared reconstruction error; the clip score is the mean over the clip's windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise

import numpy as np
import torch
from torch import nn

from defectlens.audio.models.base import AudioDetector, WindowSampler, clip_windows
from defectlens.audio.models.registry import register
from defectlens.core.context import FitContext
from defectlens.core.estimator import setting
from defectlens.core.loop import EpochLoop, shuffled_indices
from defectlens.core.settings import POSITIVE, POSITIVE_INT


def stack_frames(windows: torch.Tensor) -> torch.Tensor:
    """(B, n_mels, frames) windows -> (B, frames * n_mels) vectors, frame after frame as the baseline."""
    return windows.transpose(1, 2).reshape(len(windows), -1)


def _dense_block(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU()]


class DenseAutoencoder(nn.Module):
    """(B, input_dim) -> (B, input_dim) reconstruction.

    Args:
        input_dim: size of a stacked-frame vector (frames x n_mels).
        hidden_units: width of the hidden layers.
        bottleneck_units: width of the code.
        hidden_layers: hidden layers on each side of the code.
    """

    def __init__(self, input_dim: int, hidden_units: int, bottleneck_units: int, hidden_layers: int) -> None:
        super().__init__()
        widths = [input_dim] + [hidden_units] * hidden_layers
        encoder = [layer for a, b in pairwise(widths) for layer in _dense_block(a, b)]
        decoder_widths = [bottleneck_units] + [hidden_units] * hidden_layers
        decoder = [layer for a, b in pairwise(decoder_widths) for layer in _dense_block(a, b)]
        self.net = nn.Sequential(
            *encoder,
            *_dense_block(hidden_units, bottleneck_units),
            *decoder,
            nn.Linear(hidden_units, input_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register("dcase-baseline-ae")
class DenseAEDetector(AudioDetector):
    """DCASE 2020 Task 2 baseline: dense autoencoder on stacked log-mel frames, clip score = mean MSE.

    Args:
        frames: consecutive frames stacked into one input vector.
        hidden_units: width of the hidden layers.
        bottleneck_units: width of the code.
        hidden_layers: hidden layers on each side of the code.
        lr: Adam learning rate.
        max_epochs: training epochs.
        score: "mse_mean", the only score.
        the log-mel settings (the baseline's: 1024-point FFT, hop 512, 128 mels, power 2), sample_rate,
        channel, batch_size, seed, device and the calibration settings: see AudioDetector.
    """

    score_names = ("mse_mean",)

    frames: int = setting(5, POSITIVE_INT)
    hidden_units: int = setting(128, POSITIVE_INT)
    bottleneck_units: int = setting(8, POSITIVE_INT)
    hidden_layers: int = setting(4, POSITIVE_INT)
    lr: float = setting(1e-3, POSITIVE)
    max_epochs: int = setting(100, POSITIVE_INT)
    score: str = setting("mse_mean")

    @property
    def window_frames(self) -> int:
        return self.frames

    def _new_module(self) -> DenseAutoencoder:
        return DenseAutoencoder(
            self.frames * self.n_mels, self.hidden_units, self.bottleneck_units, self.hidden_layers
        )

    def _fit_features(self, spectrograms: list[np.ndarray], context: FitContext) -> nn.Module:
        model = self._new_module().to(context.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        sampler = WindowSampler(spectrograms, self.frames, 1)

        def train_epoch(epoch: int) -> dict[str, float]:
            model.train()
            total, count = 0.0, 0
            for index in shuffled_indices(len(sampler), self.batch_size):
                x = stack_frames(torch.from_numpy(sampler.gather(index))).to(context.device)
                loss = nn.functional.mse_loss(model(x), x)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * len(x), count + len(x)
            return {"loss": total / count}

        loop = EpochLoop(self.max_epochs, None, context, desc=self.name)
        self.history_ = loop.run(train_epoch, {"model": model, "optimizer": optimizer})
        return model

    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        return self._new_module()

    def _score_windows(self, spectrogram: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
        windows = clip_windows(spectrogram, self.frames, 1)

        def errors(batch: torch.Tensor) -> dict[str, torch.Tensor]:
            x = stack_frames(batch)
            return {"mse": (self.module_(x) - x).pow(2).mean(dim=1)}

        per_window = self._forward_in_batches(windows, errors)["mse"].numpy().astype(np.float64)
        return {"mse_mean": (float(per_window.mean()), per_window)}
