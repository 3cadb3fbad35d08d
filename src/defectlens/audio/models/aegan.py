"""AEGAN-AD (Jiang et al., 2023): a convolutional autoencoder trained as a WGAN-GP generator.

Input: square log-mel patches of `n_mels` x `n_mels` frames taken every `patch_hop` frames, scaled to
[-1, 1] with the training set's minimum and maximum. Defaults follow the authors' DCASE 2020 fan
configuration: 2048-point FFT, hop 512, 128 mel bands, power 2, `power_to_db` with an 80 dB range,
128-frame patches every frame, latent size 256, 32 base channels in generator and critic, layer norm,
Adam (lr 2e-4, beta1 0.5), batch 512, 50 epochs, gradient penalty weight 10, feature matching on the
critic's embedding with weight 1 on the mean term and 0 on the standard-deviation term.

Training, per batch x: the critic minimises `E[D(G(x))] - E[D(x)] + gp_weight * E[(|grad D(x_hat)| - 1)^2]`
(WGAN-GP, x_hat between x and G(x)); the generator minimises `MSE(G(x), x) + mean_match_weight *
|mean f(x) - mean f(G(x))|^2 + std_match_weight * |std f(x) - std f(G(x))|^2`, f the critic's embedding,
the squared norms averaged over the embedding's dimensions as in the authors' code.

Detection scores, all computed for every clip (`score` picks the one `clip_scores` reports):
- `gx_{l1,l2}_{mean,max,min}`: reconstruction error |G(x) - x| (L1) or (G(x) - x)^2 (L2), averaged
  over each patch, then the mean, max or min over the clip's patches;
- `gz_{l1,l2,cos}_{mean,max,min}`: distance between the code of x and the code of G(x) (L1, L2 or
  1 - cosine similarity) per patch, then mean/max/min over patches;
- `d_lof`, `d_knn`: the critic's embedding averaged over the clip's patches, scored against the
  training clips' embeddings by scikit-learn's LocalOutlierFactor (novelty, 4 neighbours, cosine
  metric; score = -score_samples) or NearestNeighbors (sum of cosine distances to 2 neighbours). The
  window scores of these two are the same scorers applied to each patch's embedding.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from defectlens.audio.models.base import AudioDetector, WindowSampler, clip_windows
from defectlens.audio.models.registry import register
from defectlens.core.context import FitContext
from defectlens.core.estimator import setting
from defectlens.core.loop import EpochLoop, shuffled_indices
from defectlens.core.settings import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Real
from defectlens.errors import ConfigError

SMALLEST_MAP = 4  # the conv pyramids halve the patch until it is 4 x 4
PATCH_SCORES = ("gx_l1", "gx_l2", "gz_l1", "gz_l2", "gz_cos")  # per-patch scores, pooled over a clip
POOLINGS = {"mean": np.mean, "max": np.max, "min": np.min}
SCORE_NAMES = (*(f"{s}_{p}" for s in PATCH_SCORES for p in POOLINGS), "d_lof", "d_knn")


def _init_weights(module: nn.Module) -> None:
    """DCGAN initialisation of convolutions: N(0, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)


def down_pyramid(size: int, width: int) -> tuple[nn.Sequential, int]:
    """Strided 4x4 convolutions with layer norm and LeakyReLU(0.2): (B, 1, size, size) -> (B, C, 4, 4).

    Returns:
        The layers and C, the channels of the last one (width doubled at every halving after the first).
    """
    layers: list[nn.Module] = []
    channels_in, channels, side = 1, width, size // 2
    while True:
        layers += [
            nn.Conv2d(channels_in, channels, 4, 2, 1, bias=False),
            nn.LayerNorm((channels, side, side)),
            nn.LeakyReLU(0.2),
        ]
        if side == SMALLEST_MAP:
            return nn.Sequential(*layers), channels
        channels_in, channels, side = channels, channels * 2, side // 2


class Generator(nn.Module):
    """DCGAN-style autoencoder: (B, 1, S, S) in [-1, 1] -> code (B, latent_dim) -> (B, 1, S, S) in [-1, 1].

    Args:
        size: patch side S, a power of two >= 16.
        width: channels of the first encoder layer (the decoder mirrors the encoder).
        latent_dim: size of the code.
    """

    def __init__(self, size: int, width: int, latent_dim: int) -> None:
        super().__init__()
        pyramid, channels = down_pyramid(size, width)
        self.encoder = nn.Sequential(pyramid, nn.Conv2d(channels, latent_dim, SMALLEST_MAP, 1, 0, bias=False))
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, channels, SMALLEST_MAP, 1, 0, bias=False),
            nn.LayerNorm((channels, SMALLEST_MAP, SMALLEST_MAP)),
            nn.ReLU(),
        ]
        side = SMALLEST_MAP
        while channels > width:
            side *= 2
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                nn.LayerNorm((channels // 2, side, side)),
                nn.ReLU(),
            ]
            channels //= 2
        layers += [nn.ConvTranspose2d(width, 1, 4, 2, 1, bias=False), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) -> (B, latent_dim)."""
        return self.encoder(x).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, 1, S, S)."""
        return self.decoder(z[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class Critic(nn.Module):
    """WGAN critic with an embedding: (B, 1, S, S) -> embedding (B, C) -> critic value (B,).

    The embedding is a depthwise 4x4 convolution over the pyramid's last 4 x 4 map (as in AEGAN-AD).
    """

    def __init__(self, size: int, width: int) -> None:
        super().__init__()
        self.pyramid, channels = down_pyramid(size, width)
        self.embedding = nn.Conv2d(channels, channels, SMALLEST_MAP, 1, 0, bias=False, groups=channels)
        self.head = nn.Sequential(nn.LayerNorm(channels), nn.LeakyReLU(0.2), nn.Linear(channels, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) -> (B, C)."""
        return self.embedding(self.pyramid(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, S, S) -> critic values (B,) and embeddings (B, C)."""
        features = self.embed(x)
        return self.head(features).squeeze(1), features


class AEGANModule(nn.Module):
    """Generator, critic and what scoring needs from training: the input range and the training clips'
    mean critic embeddings (buffers, so they travel in the state_dict)."""

    def __init__(
        self, size: int, generator_width: int, critic_width: int, latent_dim: int, n_train: int
    ) -> None:
        super().__init__()
        self.generator = Generator(size, generator_width, latent_dim)
        self.critic = Critic(size, critic_width)
        self.register_buffer("input_range", torch.zeros(2))
        self.register_buffer(
            "train_embeddings", torch.zeros(n_train, critic_width * size // (2 * SMALLEST_MAP))
        )

    def scale(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Map the training log-mel range [low, high] to [-1, 1]."""
        low, high = self.input_range
        return (log_mel - (high + low) / 2) / ((high - low) / 2)


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] at random points x_hat between real and fake patches."""
    alpha = torch.rand(len(real), 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    values, _ = critic(mixed)
    (grad,) = torch.autograd.grad(values.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def feature_matching(
    real: torch.Tensor, fake: torch.Tensor, mean_weight: float, std_weight: float
) -> torch.Tensor:
    """mean_weight * |mean f(x) - mean f(G(x))|^2 + std_weight * |std f(x) - std f(G(x))|^2 over the batch,
    squared differences averaged over the embedding's dimensions."""
    loss = mean_weight * nn.functional.mse_loss(fake.mean(0), real.mean(0))
    if std_weight:
        loss = loss + std_weight * nn.functional.mse_loss(
            fake.std(0, unbiased=False), real.std(0, unbiased=False)
        )
    return loss


@register("aegan-ad")
class AEGANDetector(AudioDetector):
    """AEGAN-AD: autoencoder generator + WGAN-GP critic on log-mel patches; 17 detection scores.

    Args:
        n_fft: FFT length (2048 here, as the paper's).
        n_mels: mel bands (see AudioDetector), also the patch length in frames; a power of two >= 16.
        top_db: dynamic range kept below each clip's maximum (dB); `None` keeps all.
        patch_hop: frames between the starts of consecutive patches (training and scoring).
        latent_dim: size of the generator's code.
        generator_width: channels of the generator's first layer.
        critic_width: channels of the critic's first layer.
        lr_generator: Adam learning rate of the generator.
        lr_critic: Adam learning rate of the critic.
        beta1: Adam's first beta for both.
        max_epochs: training epochs.
        gp_weight: gradient penalty weight (lambda).
        mean_match_weight: weight of the embedding-mean matching term (mu1).
        std_match_weight: weight of the embedding-std matching term (mu2).
        lof_neighbors: neighbours of the D-LOF scorer.
        knn_neighbors: neighbours of the D-KNN scorer.
        score: the detection score `clip_scores` reports (see the module docstring).
        sample_rate, channel, batch_size, seed, device and the calibration settings: see AudioDetector.
    """

    score_names = SCORE_NAMES

    n_fft: int = setting(2048)
    top_db: float | None = setting(80.0)
    patch_hop: int = setting(1, POSITIVE_INT)
    latent_dim: int = setting(256, POSITIVE_INT)
    generator_width: int = setting(32, POSITIVE_INT)
    critic_width: int = setting(32, POSITIVE_INT)
    lr_generator: float = setting(2e-4, POSITIVE)
    lr_critic: float = setting(2e-4, POSITIVE)
    beta1: float = setting(0.5, Real(0, 1, closed="left"))
    max_epochs: int = setting(50, POSITIVE_INT)
    gp_weight: float = setting(10.0, NON_NEGATIVE)
    mean_match_weight: float = setting(1.0, NON_NEGATIVE)
    std_match_weight: float = setting(0.0, NON_NEGATIVE)
    lof_neighbors: int = setting(4, POSITIVE_INT)
    knn_neighbors: int = setting(2, POSITIVE_INT)
    score: str = setting("d_lof")

    @property
    def window_frames(self) -> int:
        return self.n_mels

    @property
    def window_hop(self) -> int:
        return self.patch_hop

    def _check_params(self) -> None:
        super()._check_params()
        if self.n_mels < 16 or self.n_mels & (self.n_mels - 1):
            raise ConfigError(f"n_mels must be a power of two >= 16 (the patch side), got {self.n_mels}")

    def _new_module(self, n_train: int) -> AEGANModule:
        return AEGANModule(self.n_mels, self.generator_width, self.critic_width, self.latent_dim, n_train)

    def _fit_features(self, spectrograms: list[np.ndarray], context: FitContext) -> nn.Module:
        module = self._new_module(len(spectrograms)).to(context.device)
        module.apply(_init_weights)
        low = min(float(s.min()) for s in spectrograms)
        high = max(float(s.max()) for s in spectrograms)
        module.input_range.copy_(torch.tensor([low, high if high > low else low + 1.0]))
        generator, critic = module.generator, module.critic
        betas = (self.beta1, 0.999)
        optimizer_g = torch.optim.Adam(generator.parameters(), lr=self.lr_generator, betas=betas)
        optimizer_d = torch.optim.Adam(critic.parameters(), lr=self.lr_critic, betas=betas)
        sampler = WindowSampler(spectrograms, self.n_mels, self.patch_hop)

        def train_epoch(epoch: int) -> dict[str, float]:
            module.train()
            sums = {"critic": 0.0, "recon": 0.0, "match": 0.0}
            n_batches = 0
            for index in shuffled_indices(len(sampler), self.batch_size):
                x = module.scale(torch.from_numpy(sampler.gather(index)).to(context.device)).unsqueeze(1)
                fake = generator(x).detach()
                loss_d = (
                    critic(fake)[0].mean()
                    - critic(x)[0].mean()
                    + self.gp_weight * gradient_penalty(critic, x, fake)
                )
                optimizer_d.zero_grad()
                loss_d.backward()
                optimizer_d.step()

                fake = generator(x)
                recon = nn.functional.mse_loss(fake, x)
                match = feature_matching(
                    critic.embed(x), critic.embed(fake), self.mean_match_weight, self.std_match_weight
                )
                optimizer_g.zero_grad()
                (recon + match).backward()
                optimizer_g.step()
                for key, value in (("critic", loss_d), ("recon", recon), ("match", match)):
                    sums[key] += value.item()
                n_batches += 1
            return {key: value / n_batches for key, value in sums.items()}

        state = {"module": module, "optimizer_g": optimizer_g, "optimizer_d": optimizer_d}
        self.history_ = EpochLoop(self.max_epochs, None, context, desc=self.name).run(train_epoch, state)
        module.eval()
        self.module_ = module
        embeddings = [self._patch_outputs(s)["embedding"].mean(0) for s in spectrograms]
        module.train_embeddings.copy_(torch.stack(embeddings))
        return module

    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        return self._new_module(len(state["train_embeddings"]))

    def _prepare(self) -> None:
        from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

        train = self.module_.train_embeddings.cpu().numpy().astype(np.float64)
        n_train = len(train)
        self.lof_ = LocalOutlierFactor(
            n_neighbors=min(self.lof_neighbors, max(n_train - 1, 1)), metric="cosine", novelty=True
        ).fit(train)
        self.knn_ = NearestNeighbors(n_neighbors=min(self.knn_neighbors, n_train), metric="cosine").fit(train)

    def _patch_outputs(self, spectrogram: np.ndarray) -> dict[str, torch.Tensor]:
        """Per patch of one clip: reconstruction errors, code distances and the critic's embedding."""
        module = self.module_

        def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
            x = module.scale(batch).unsqueeze(1)
            code = module.generator.encode(x)
            recon = module.generator.decode(code)
            recon_code = module.generator.encode(recon)
            return {
                "gx_l1": (recon - x).abs().mean(dim=(1, 2, 3)),
                "gx_l2": (recon - x).pow(2).mean(dim=(1, 2, 3)),
                "gz_l1": (recon_code - code).abs().mean(dim=1),
                "gz_l2": (recon_code - code).pow(2).mean(dim=1),
                "gz_cos": 1 - nn.functional.cosine_similarity(recon_code, code, dim=1),
                "embedding": module.critic.embed(x),
            }

        return self._forward_in_batches(clip_windows(spectrogram, self.n_mels, self.patch_hop), forward)

    def _neighbour_scores(self, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        """D-LOF and D-KNN of (n, C) embeddings against the training clips' embeddings."""
        distances, _ = self.knn_.kneighbors(embeddings)
        return {"d_lof": -self.lof_.score_samples(embeddings), "d_knn": distances.sum(axis=1)}

    def _score_windows(self, spectrogram: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
        outputs = {k: v.numpy().astype(np.float64) for k, v in self._patch_outputs(spectrogram).items()}
        scores = {
            f"{name}_{pooling}": (float(pool(outputs[name])), outputs[name])
            for name in PATCH_SCORES
            for pooling, pool in POOLINGS.items()
        }
        embeddings = outputs["embedding"]
        per_patch = self._neighbour_scores(embeddings)
        per_clip = self._neighbour_scores(embeddings.mean(axis=0, keepdims=True))
        scores.update({name: (float(per_clip[name][0]), per_patch[name]) for name in per_patch})
        return scores
