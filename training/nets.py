"""The networks: a CNN for images, an LSTM for text, an MLP for feature rows; each with a @dataclass config.

Both take what the service sends, so the exported graph is the whole model: the CNN takes uint8 pixels
(B, H, W, C) and scales and normalises inside; the LSTM takes right-padded int64 ids (B, T) and reads
only the real tokens, so a text's answer does not depend on the padding around it; the MLP takes raw
feature values (B, F) and standardises and one-hot encodes inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class ImageCNNConfig:
    channels: int = 1  # 1 grey (MNIST, digits), 3 RGB (CIFAR-10)
    image_size: int = 28
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.2
    # "mean": global average pool (where a shape is matters little); "flatten": keep the last map's layout
    # (a garment's silhouette: Fashion-MNIST gains ~1 point).
    pool: str = "mean"
    mean: tuple[float, ...] = field(default_factory=lambda: (0.5,))
    std: tuple[float, ...] = field(default_factory=lambda: (0.5,))


class ImageCNN(nn.Module):
    def __init__(self, cfg: ImageCNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i, width in enumerate(cfg.widths):
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            if i < len(cfg.widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.features = nn.Sequential(*layers)
        if cfg.pool not in ("mean", "flatten"):
            raise ValueError(f"pool must be 'mean' or 'flatten', not {cfg.pool!r}")
        side = cfg.image_size // 2 ** (len(cfg.widths) - 1)
        features = c_in if cfg.pool == "mean" else c_in * side * side
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(features, cfg.num_classes))
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # (B, C, H, W) in [0, 1]
        x = (x - self.mean) / self.std
        x = self.features(x)  # (B, W_last, H', W')
        x = x.mean(dim=(2, 3)) if self.cfg.pool == "mean" else x.flatten(1)  # (B, W_last[*H'*W'])
        return self.head(x)  # (B, K) logits


@dataclass
class TextLSTMConfig:
    vocab_size: int
    num_classes: int = 2
    embed_dim: int = 64
    hidden_dim: int = 96
    num_layers: int = 1
    dropout: float = 0.3
    pad_id: int = 0
    # Pretrained (GloVe) rows are loaded after construction and kept fixed, so words training never saw
    # keep their meaning; see training/kinds/text/glove.py.
    freeze_embeddings: bool = False
    # Learned dimensions beside frozen ones, zero at the start: a word training never showed keeps zeros
    # there, and reads by its pretrained part alone.
    tuned_dim: int = 0
    # A second LSTM reads each text backwards (reversed within its length, so pads stay on the right).
    bidirectional: bool = False


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``lengths[b]`` steps reversed, the padding after them left in place: (B, T, E)."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
    source = lengths.unsqueeze(1) - 1 - steps  # (B, T)
    source = torch.where(source >= 0, source, steps)  # pads read themselves
    return x.gather(1, source.unsqueeze(2).expand(-1, -1, x.shape[2]))


class TextLSTM(nn.Module):
    def __init__(self, cfg: TextLSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.pad_id)
        self.embed.weight.requires_grad_(not cfg.freeze_embeddings)
        self.tuned = (
            nn.Embedding(cfg.vocab_size, cfg.tuned_dim, padding_idx=cfg.pad_id) if cfg.tuned_dim else None
        )
        if self.tuned is not None:
            nn.init.zeros_(self.tuned.weight)
        directions = 2 if cfg.bidirectional else 1
        self.lstm = self._lstm(cfg)
        self.lstm_reverse = self._lstm(cfg) if cfg.bidirectional else None
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * directions * cfg.hidden_dim, cfg.num_classes)

    @staticmethod
    def _lstm(cfg: TextLSTMConfig) -> nn.LSTM:
        return nn.LSTM(
            cfg.embed_dim + cfg.tuned_dim,
            cfg.hidden_dim,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.cfg.pad_id  # (B, T)
        lengths = mask.sum(dim=1).clamp(min=1)  # (B,)
        x = self.embed(ids)  # (B, T, E)
        if self.tuned is not None:
            x = torch.cat([x, self.tuned(ids)], dim=2)  # (B, T, E + E_tuned)
        x = self.drop(x)
        runs = [self.lstm(x)[0]]  # (B, T, H)
        if self.lstm_reverse is not None:
            runs.append(self.lstm_reverse(reverse_within_length(x, lengths))[0])  # (B, T, H)
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.cfg.hidden_dim)  # (B, 1, H)
        features = []
        for out in runs:
            # An LSTM's state at the last real token never saw the right padding.
            features.append(out.gather(1, index).squeeze(1))  # (B, H)
            features.append(out.masked_fill(~mask.unsqueeze(2), -1e4).amax(dim=1))  # (B, H), pads excluded
        return self.head(self.drop(torch.cat(features, dim=1)))  # (B, K) logits


@dataclass
class TabularMLPConfig:
    num_features: int
    num_classes: int
    numeric: tuple[int, ...] = ()  # columns standardised with mean/std
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    categorical: tuple[tuple[int, int], ...] = ()  # (column, number of categories): one-hot inside
    hidden: tuple[int, ...] = (256, 256)
    dropout: float = 0.2


class TabularMLP(nn.Module):
    """Raw feature rows (B, F) float32 in: numeric columns standardised with the training mean and std,
    categorical columns (category indices) one-hot encoded, inside the graph; then dense layers."""

    def __init__(self, cfg: TabularMLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.numeric: torch.Tensor
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("numeric", torch.tensor(cfg.numeric, dtype=torch.int64))
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32))
        # One-hot by comparison with 0..n-1: an index outside the range gives all zeros, never an error.
        for i, (_, n) in enumerate(cfg.categorical):
            self.register_buffer(f"levels{i}", torch.arange(n, dtype=torch.float32))
        width = len(cfg.numeric) + sum(n for _, n in cfg.categorical)
        layers: list[nn.Module] = []
        for size in cfg.hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = size
        layers.append(nn.Linear(width, cfg.num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [(x.index_select(1, self.numeric) - self.mean) / self.std]  # (B, numeric)
        for i, (column, _) in enumerate(self.cfg.categorical):
            levels = getattr(self, f"levels{i}")  # (n,)
            parts.append((x[:, column : column + 1] == levels).to(torch.float32))  # (B, n)
        return self.mlp(torch.cat(parts, dim=1))  # (B, K) logits


@dataclass
class AudioCRNNConfig:
    n_mels: int = 40
    num_classes: int = 22
    channels: tuple[int, ...] = (64, 128)
    hidden_dim: int = 128
    dropout: float = 0.1
    rnn: str = "lstm"  # lstm | gru
    bidirectional: bool = True
    # "band": each band standardised with the training statistics; "clip": each clip's own mean per band
    # (over its frames within 50 dB of its peak) taken off first, so a fixed spectral envelope (an engine's,
    # a microphone's) does not reach the network.
    norm: str = "band"
    # "conv1d": the bands are the first convolution's channels (a formant moved by a band is another
    # input); "conv2d": 3x3 convolutions over (time, band) with max-pooling across bands, so a pattern
    # moved a band or two (another vocal tract, another engine's formants) excites the same filters.
    frontend: str = "conv1d"
    # > 0: each frame's spectrum kept to its first ``lifter`` cepstral coefficients (a DCT across the bands,
    # truncated, and back): the envelope (formants) without the fine structure (harmonics of the pitch,
    # an engine's excitation). Applied to the dB features before everything else.
    lifter: int = 0
    mean: tuple[float, ...] = field(default_factory=lambda: (0.0,))  # per mel band, from training
    std: tuple[float, ...] = field(default_factory=lambda: (1.0,))


def lifter_matrix(bands: int, keep: int) -> np.ndarray:
    """(bands, bands) float32: a frame (row vector) times it is the frame with only its first ``keep``
    cepstral coefficients (orthonormal DCT-II across the bands, truncated, inverted)."""
    k = np.arange(bands)[:, None]
    n = np.arange(bands)[None, :]
    dct = np.cos(np.pi * k * (2 * n + 1) / (2 * bands)) * np.sqrt(2.0 / bands)
    dct[0] /= np.sqrt(2.0)  # orthonormal: dct @ dct.T == I
    kept = dct[:keep]
    return (kept.T @ kept).astype(np.float32)  # symmetric: x @ m == x @ m.T


def band_input(features: torch.Tensor, norm: str, smooth: torch.Tensor | None) -> torch.Tensor:
    """What AudioCRNN standardises band by band: the dB features (B, T, M), smoothed by the lifter's matrix
    (``smooth``) when it has one, and with ``norm="clip"`` less each clip's own mean per band over its
    frames within 50 dB of its peak. The graph runs it, and training takes the band statistics of it."""
    if smooth is not None:
        features = features @ smooth  # (B, T, M) x (M, M)
    if norm == "clip":
        frame_peak = features.amax(dim=2, keepdim=True)  # (B, T, 1)
        active = (frame_peak > features.amax(dim=(1, 2), keepdim=True) - 50.0).to(features.dtype)
        clip_mean = (features * active).sum(dim=1, keepdim=True) / active.sum(dim=1, keepdim=True)
        features = features - clip_mean  # (B, T, M) minus (B, 1, M)
    return features


class AudioCRNN(nn.Module):
    """Log-mel frames -> 1-D convolutions over time (stride 2 each), or 2-D ones over time and bands
    (``frontend="conv2d"``) -> LSTM or GRU -> mean+max.

    Takes the features of service/kinds/audio/preprocess.py, (B, T, M) dB, and standardises each band inside,
    so the graph is the whole model. The 1-D convolutions see the bands as channels (the 2-D ones see a
    picture of time x bands and pool the bands); both cut 10 ms frames to 40 ms steps, which keeps the
    LSTM short (25 steps a second) and CPU training cheap. Clips are fixed-length windows: no padding, no
    masks, and a row's answer cannot depend on its batch."""

    def __init__(self, cfg: AudioCRNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if (
            cfg.rnn not in ("lstm", "gru")
            or cfg.norm not in ("band", "clip")
            or cfg.frontend not in ("conv1d", "conv2d")
        ):
            raise ValueError(
                f"rnn {cfg.rnn!r} (lstm|gru), norm {cfg.norm!r} (band|clip), "
                f"frontend {cfg.frontend!r} (conv1d|conv2d)"
            )
        layers: list[nn.Module] = []
        if cfg.frontend == "conv1d":
            c_in = cfg.n_mels
            for i, width in enumerate(cfg.channels):
                k = 5 if i == 0 else 3
                layers += [
                    nn.Conv1d(c_in, width, k, stride=2, padding=k // 2, bias=False),
                    nn.BatchNorm1d(width),
                    nn.ReLU(),
                ]
                c_in = width
        else:
            # One 3x3 layer at full resolution, then one per width with stride 2 in time; each halves
            # the bands by max-pooling. The RNN reads each step's channels x remaining bands.
            c_in, bands = 1, cfg.n_mels
            for i, width in enumerate((cfg.channels[0], *cfg.channels)):
                stride = (1, 1) if i == 0 else (2, 1)
                layers += [
                    nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                    nn.MaxPool2d((1, 2)),
                ]
                c_in, bands = width, bands // 2
            c_in *= bands
        self.conv = nn.Sequential(*layers)
        self.drop = nn.Dropout(cfg.dropout)
        rnn = nn.LSTM if cfg.rnn == "lstm" else nn.GRU
        # Named `lstm` whatever the cell: checkpoints made before the GRU option load unchanged.
        self.lstm = rnn(c_in, cfg.hidden_dim, batch_first=True, bidirectional=cfg.bidirectional)
        directions = 2 if cfg.bidirectional else 1
        self.head = nn.Linear(2 * directions * cfg.hidden_dim, cfg.num_classes)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, 1, -1))
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, 1, -1))
        self.smooth: torch.Tensor | None
        lifter = torch.from_numpy(lifter_matrix(cfg.n_mels, cfg.lifter)) if cfg.lifter else None
        self.register_buffer("smooth", lifter)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (band_input(features, self.cfg.norm, self.smooth) - self.mean) / self.std  # (B, T, M)
        if self.cfg.frontend == "conv1d":
            x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T/4, C)
        else:
            x = self.conv(x.unsqueeze(1))  # (B, C, T/4, M/8) with two widths (three layers)
            x = x.permute(0, 2, 1, 3).flatten(2)  # (B, T/4, C * M/8): each step's channels x bands
        out, _ = self.lstm(self.drop(x))  # (B, T/4, D*H)
        pooled = torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=1)  # (B, 2*D*H)
        return self.head(self.drop(pooled))  # (B, K) logits
