"""The 64x64 CNN encoder/decoder (symlog, two-hot and the MLP live in :mod:`dreamlab.core.nn`)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """Observations handled by the CNN: (64, 64, channels) uint8/float images (HWC)."""
    return len(shape) == 3 and shape[0] == 64 and shape[1] == 64


class ConvEncoder(nn.Module):
    """(..., 64, 64, C) images in [0, 255] -> (..., out_dim); four stride-2 convs 64->4."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = channels
        for i in range(4):
            nxt = depth * 2**i
            layers += [nn.Conv2d(width, nxt, 4, 2, 1, bias=False), _ChannelNorm(nxt), nn.SiLU()]
            width = nxt
        self.net = nn.Sequential(*layers)
        self.out_dim = width * 4 * 4

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        lead = img.shape[:-3]
        x = rearrange(img.reshape(-1, *img.shape[-3:]), "n h w c -> n c h w") / 255.0 - 0.5
        x = self.net(x)  # (n, 8*depth, 4, 4)
        return x.reshape(*lead, self.out_dim)


class ConvDecoder(nn.Module):
    """(..., feat) -> (..., 64, 64, C) images in the encoder's [-0.5, 0.5] scale."""

    def __init__(self, feat: int, channels: int, depth: int):
        super().__init__()
        self.top = depth * 8
        self.lin = nn.Linear(feat, self.top * 4 * 4)
        layers: list[nn.Module] = []
        width = self.top
        for i in range(3):
            nxt = depth * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(width, nxt, 4, 2, 1, bias=False), _ChannelNorm(nxt), nn.SiLU()]
            width = nxt
        layers.append(nn.ConvTranspose2d(width, channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        lead = feat.shape[:-1]
        x = rearrange(self.lin(feat.reshape(-1, feat.shape[-1])), "n (c h w) -> n c h w", h=4, w=4)
        x = self.net(x)  # (n, C, 64, 64)
        return rearrange(x, "n c h w -> n h w c").reshape(*lead, *x.shape[-2:], x.shape[1])


class _ChannelNorm(nn.Module):
    """LayerNorm over channels of an NCHW map."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
