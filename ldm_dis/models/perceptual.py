"""LPIPS-style perceptual distance (VGG16 features) in plain torch, loaded only from a local file.

Network weights (ImageNet VGG16 + LPIPS linear heads) cannot be downloaded here, so nothing is fetched:
``PerceptualLoss.from_file(path)`` reads a state dict saved by ``torch.save`` or safetensors in one of
  * taming/LPIPS layout: ``net.slice1.0.weight`` ... ``lin0.model.1.weight`` (optionally prefixed
    ``loss.perceptual_loss.`` as inside a taming VQ-GAN ``.ckpt``, which carries the whole LPIPS net);
  * torchvision VGG16 layout ``features.0.weight`` ... plus ``lin0.model.1.weight`` ... heads.
Missing or unexpected keys are an error that names them.

d(x, y) = sum_l mean_hw( w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 ), per image: (B,).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from ldm_dis.errors import UserInputError

log = logging.getLogger(__name__)

# VGG16 "features" indices of the conv layers, grouped into LPIPS' five slices (ending at relu1_2 ... relu5_3)
_SLICE_ENDS = [4, 9, 16, 23, 30]
_CHANNELS = [64, 128, 256, 512, 512]
_TAMING_PREFIX = "loss.perceptual_loss."


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` layer for layer (so indices match), without torchvision."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)


class _LinHead(nn.Module):
    """LPIPS ``NetLinLayer``: dropout then a 1x1 conv without bias (key ``model.1.weight``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class _VGGSlices(nn.Module):
    def __init__(self):
        super().__init__()
        feats = _vgg16_features()
        start = 0
        for k, end in enumerate(_SLICE_ENDS, 1):
            s = nn.Sequential()
            for i in range(start, end):
                s.add_module(str(i), feats[i])  # keep torchvision indices in the key names
            setattr(self, f"slice{k}", s)
            start = end

    def forward(self, x):
        outs = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            outs.append(x)
        return outs


class _ScalingLayer(nn.Module):
    """ImageNet normalisation of [-1, 1] inputs (LPIPS' values; buffers as in its state dict)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.shift) / self.scale


class PerceptualLoss(nn.Module):
    """Frozen LPIPS(VGG16). Inputs (B, 3, H, W) in [-1, 1]; output (B,)."""

    def __init__(self):
        super().__init__()
        self.scaling_layer = _ScalingLayer()
        self.net = _VGGSlices()
        for k, c in enumerate(_CHANNELS):
            setattr(self, f"lin{k}", _LinHead(c))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # always evaluation mode (no dropout in the heads)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.net(self.scaling_layer(x))
        fy = self.net(self.scaling_layer(y))
        total = 0.0
        for k, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = getattr(self, f"lin{k}").model((a - b) ** 2)  # (B, 1, h, w)
            total = total + d.mean(dim=(1, 2, 3))
        return total

    # --- loading -------------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> "PerceptualLoss":
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"model.first_stage.perceptual_weights: file {str(path)!r} does not exist")
        if path.suffix == ".safetensors":
            from ldm_dis.models.weights import read_tensors  # a damaged file is a clear error

            sd = read_tensors(path)
        else:
            try:
                sd = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:  # truncated zip, foreign pickle refused by weights_only...
                raise UserInputError(f"model.first_stage.perceptual_weights: cannot read {str(path)!r} with "
                                     f"torch.load(weights_only=True): {exc}") from None
            sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        from ldm_dis.models.weights import load_strict

        model = cls()
        load_strict(model, _to_lpips_layout(sd), f"perceptual weights {str(path)!r} (LPIPS VGG16)")
        return model


def _to_lpips_layout(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Accept the taming/LPIPS layout (possibly under the taming ckpt prefix) or torchvision VGG keys."""
    if any(k.startswith(_TAMING_PREFIX) for k in sd):
        sd = {k[len(_TAMING_PREFIX):]: v for k, v in sd.items() if k.startswith(_TAMING_PREFIX)}
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("features."):  # torchvision vgg16: features.<i>.(weight|bias)
            i = int(k.split(".")[1])
            s = next(n for n, end in enumerate(_SLICE_ENDS, 1) if i < end)
            out[f"net.slice{s}.{k[len('features.'):]}"] = v
        elif k.startswith("classifier."):
            continue  # the VGG classifier is not used
        else:
            out[k] = v
    for k, v in _ScalingLayer().state_dict().items():  # constants, absent from torchvision files
        out.setdefault(f"scaling_layer.{k}", v)
    return out


def build_perceptual(path: Optional[str]) -> Optional[PerceptualLoss]:
    """The perceptual network named in the config, or None with a note in the log when no file is given."""
    if not path:
        # a warning, not an error: the reference VQ-GAN used LPIPS, ours trains without it
        log.warning("perceptual loss off: model.first_stage.perceptual_weights is not set (no LPIPS weights file)")
        return None
    return PerceptualLoss.from_file(path)
