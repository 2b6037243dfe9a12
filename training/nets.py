"""The networks: a CNN for images, an LSTM for text; each with a @dataclass config.

Both take what the service sends, so the exported graph is the whole model: the CNN takes uint8 pixels
(B, H, W, C) and scales and normalises inside; the LSTM takes right-padded int64 ids (B, T) and reads
only the real tokens, so a text's answer does not depend on the padding around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ImageCNNConfig:
    channels: int = 1  # 1 grey (MNIST, digits), 3 RGB (CIFAR-10)
    image_size: int = 28
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.2
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
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c_in, cfg.num_classes))
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # (B, C, H, W) in [0, 1]
        x = (x - self.mean) / self.std
        x = self.features(x)  # (B, W_last, H', W')
        x = x.mean(dim=(2, 3))  # (B, W_last)
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


class TextLSTM(nn.Module):
    def __init__(self, cfg: TextLSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.pad_id)
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.hidden_dim,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden_dim, cfg.num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.cfg.pad_id  # (B, T)
        out, _ = self.lstm(self.drop(self.embed(ids)))  # (B, T, H)
        # A forward LSTM's state at the last real token never saw the right padding.
        lengths = mask.sum(dim=1).clamp(min=1)  # (B,)
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])  # (B, 1, H)
        last = out.gather(1, index).squeeze(1)  # (B, H)
        pooled = out.masked_fill(~mask.unsqueeze(2), -1e4).amax(dim=1)  # (B, H), pads excluded
        return self.head(self.drop(torch.cat([last, pooled], dim=1)))  # (B, K) logits
