"""The paper-sized configs build exactly the networks of paper Tables 7-9. Expected counts are computed
here layer by layer from the tables' description, independently of the module code."""

from __future__ import annotations

import pytest
import torch

from ldm_dis.config.loading import load_config
from ldm_dis.config.schema import Config
from ldm_dis.models.feature_extractor import FeatureExtractor
from ldm_dis.models.unet import UNet
from ldm_dis.models.vqgan import FirstStage


def conv(ci, co, k, bias=True):
    return ci * co * k * k + (co if bias else 0)


def lin(i, o, bias=True):
    return i * o + (o if bias else 0)


def norm(c):  # GroupNorm / LayerNorm / BatchNorm affine parameters
    return 2 * c


def count(m):
    return sum(p.numel() for p in m.parameters())


# ---- Table 7: VQ-GAN, taming layout (ch 32, mult [1,2,4], 2 res blocks, embed 3, 2048 codes, mid attention)
def taming_res(ci, co):
    return norm(ci) + conv(ci, co, 3) + norm(co) + conv(co, co, 3) + (conv(ci, co, 1) if ci != co else 0)


def taming_attn(c):
    return norm(c) + 4 * conv(c, c, 1)


def vqgan_params(ch=32, mult=(1, 2, 4), nres=2, embed=3, n_embed=2048, z=3):
    enc = conv(3, ch, 3)
    c = ch
    for i, m in enumerate(mult):
        for _ in range(nres):
            enc += taming_res(c, ch * m)
            c = ch * m
        if i != len(mult) - 1:
            enc += conv(c, c, 3)
    enc += 2 * taming_res(c, c) + taming_attn(c) + norm(c) + conv(c, z, 3)
    dec = conv(z, c, 3) + 2 * taming_res(c, c) + taming_attn(c)
    for i in reversed(range(len(mult))):
        for _ in range(nres + 1):
            dec += taming_res(c, ch * mult[i])
            c = ch * mult[i]
        if i != 0:
            dec += conv(c, c, 3)
    dec += norm(c) + conv(c, 3, 3)
    return enc + dec + conv(z, embed, 1) + n_embed * embed + conv(embed, z, 1)


# ---- Table 9 / released ImageEncoder + MLPModule: CNN 3-64-128-256-256-256 (BatchNorm after each conv),
# FC 4096-4096-256-N, per-unit MLP 1-256-512-32
def extractor_params(n_units=20, d=32, extra_fc=True):
    p = conv(3, 64, 7) + norm(64)
    for ci, co in [(64, 128), (128, 256), (256, 256), (256, 256)]:
        p += conv(ci, co, 4) + norm(co)
    p += (lin(4096, 4096) + lin(4096, 256) if extra_fc else lin(4096, 256)) + lin(256, n_units)
    return p + n_units * (lin(1, 256) + lin(256, 512) + lin(512, d))


# ---- Table 8: U-Net base 64, mult [1,2,4,4], 2 res blocks, attention at factors 1,2,4 (+ middle), ctx 32
def unet_params(base=64, mult=(1, 2, 4, 4), nres=2, attn=(1, 2, 4), ctx=32, c_in=3, resblock_updown=False):
    emb = 4 * base

    def res(ci, co):  # scale-shift norm: the embedding projects to 2 * co
        return norm(ci) + conv(ci, co, 3) + lin(emb, 2 * co) + norm(co) + conv(co, co, 3) + (conv(ci, co, 1) if ci != co else 0)

    def transformer(c):  # GroupNorm, proj_in/out, 3 LayerNorms, self-attn, cross-attn, GEGLU ff
        self_attn = 3 * lin(c, c, bias=False) + lin(c, c)
        cross_attn = lin(c, c, bias=False) + 2 * lin(ctx, c, bias=False) + lin(c, c)
        return norm(c) + 2 * conv(c, c, 1) + 3 * norm(c) + self_attn + cross_attn + lin(c, 8 * c) + lin(4 * c, c)

    p = lin(base, emb) + lin(emb, emb) + conv(c_in, base, 3)
    skips, c, ds = [base], base, 1
    for level, m in enumerate(mult):
        for _ in range(nres):
            p += res(c, base * m) + (transformer(base * m) if ds in attn else 0)
            c = base * m
            skips.append(c)
        if level != len(mult) - 1:
            p += res(c, c) if resblock_updown else conv(c, c, 3)  # a resampling ResBlock or a strided conv
            skips.append(c)
            ds *= 2
    p += 2 * res(c, c) + transformer(c)
    for level, m in reversed(list(enumerate(mult))):
        for i in range(nres + 1):
            p += res(c + skips.pop(), base * m) + (transformer(base * m) if ds in attn else 0)
            c = base * m
            if level and i == nres:
                p += res(c, c) if resblock_updown else conv(c, c, 3)
                ds //= 2
    return p + norm(c) + conv(c, c_in, 3)


@pytest.fixture(scope="module")
def paper_cfg():
    return load_config("shapes3d.yaml")


def test_vqgan_matches_table7(paper_cfg):
    assert count(FirstStage.from_config(paper_cfg.model.first_stage)) == vqgan_params() == 3_478_078


def test_feature_extractor_matches_table9(paper_cfg):
    fx = FeatureExtractor.from_config(paper_cfg.model.encoder, image_size=paper_cfg.data.resolution)
    # 2,764,800 (CNN) + 17,835,284 (FC head) + 20 x 148,512 (unit MLPs): "about 23.6M"
    assert count(fx) == extractor_params() == 23_570_324
    # the schema's defaults are the released extractor too
    assert count(FeatureExtractor.from_config(Config().model.encoder, image_size=64)) == 23_570_324
    assert count(FeatureExtractor(extra_fc=False)) == extractor_params(extra_fc=False)


@pytest.mark.parametrize("name", ["shapes3d", "mpi3d", "cars3d", "celeba", "dsprites"])
def test_paper_configs_build_the_released_extractor(name):
    cfg = load_config(f"{name}.yaml")
    fx = FeatureExtractor.from_config(cfg.model.encoder, image_size=cfg.data.resolution)
    assert count(fx) == 23_570_324
    torch.manual_seed(0)
    tokens = fx.eval()(torch.randn(4, 3, 64, 64))
    # the released MLPModule ends with a ReLU: non-negative tokens, many exactly 0
    assert tokens.min() >= 0 and (tokens == 0).any()


def test_unet_matches_table8(paper_cfg):
    unet = UNet.from_config(paper_cfg.model.unet, in_channels=paper_cfg.model.first_stage.embed_dim, context_dim=paper_cfg.model.encoder.unit_dim)
    assert count(unet) == unet_params()
    heads = {m.heads for m in unet.modules() if type(m).__name__ == "Attention"}
    assert heads == {8}


def test_released_protocol_unet_resamples_with_resblocks():
    cfg = load_config("shapes3d.yaml", ["protocol=released"])
    unet = UNet.from_config(cfg.model.unet, in_channels=3, context_dim=32)
    assert count(unet) == unet_params(resblock_updown=True) > unet_params()
    assert unet.skip_dropout.levels == (1, 2)  # the released size comparison: the 16x16 and 8x8 skips
