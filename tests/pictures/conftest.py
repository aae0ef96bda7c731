"""Tiny, randomly initialised components of a latent diffusion model, built directly from ldm_dis.models."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ldm_dis.config.schema import DiffusionConfig
from ldm_dis.models.diffusion import make_ddim_scheduler
from ldm_dis.models.feature_extractor import FeatureExtractor
from ldm_dis.models.unet import UNet
from ldm_dis.models.vqgan import FirstStage

NUM_UNITS, UNIT_DIM, IMAGE, LATENT = 4, 8, 16, 8


def _randomize_zero_inits(model: nn.Module) -> None:
    """Zero-initialised output convs would make the U-Net ignore its input and context; give them weights."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.abs().sum() == 0:
            nn.init.normal_(m.weight, std=0.2)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny tensors on shared cores: OpenMP threads spin-waiting on each other cost 20x, one thread is fastest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny():
    """unet, scheduler, decode, encoder (images (B, 3, 16, 16) -> units (B, 4, 8)), latent shape (3, 8, 8)."""
    torch.manual_seed(0)
    unet = UNet(in_channels=3, base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_downsample=(1, 2),
                num_heads=2, context_dim=UNIT_DIM, dropout=0.1, skip_dropout=0.2)
    _randomize_zero_inits(unet)
    first_stage = FirstStage(embed_dim=3, n_embed=32, base_channels=32, channel_mult=(1, 2), num_res_blocks=1)
    encoder = FeatureExtractor(num_units=NUM_UNITS, unit_dim=UNIT_DIM, image_size=IMAGE, stem_channels=8,
                               channels=(16, 16), hidden=32, extra_fc=False,
                               unit_mlp=(16,))
    return SimpleNamespace(
        unet=unet.eval(),
        scheduler=make_ddim_scheduler(DiffusionConfig()),
        decode=first_stage.eval().decode_scaled,
        encoder=encoder.eval(),
        latent_shape=(3, LATENT, LATENT),
        num_units=NUM_UNITS,
        unit_dim=UNIT_DIM,
        image_size=IMAGE,
    )
