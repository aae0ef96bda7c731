"""A compact re-implementation of the released dis-dis latent diffusion model (youngjun-jun/dis-dis:
ldm/models/diffusion/ddpm_dyga.py, ldm/modules/diffusionmodules/openaimodel_skip-dropout.py,
ldm/modules/attention.py, ldm/modules/encoders/modules.py, ldm/modules/ema.py) with the original module
names, so that its state_dict has the released key layout, and writers of the released files: the
Lightning ``.ckpt`` and the ``gaussian-epoch=NNNNNN.npz``. Independent of ldm_dis' code."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from taming_oracle import TamingVQModel


# ------------------------------------------------------------------- ldm/modules/diffusionmodules/util.py
class GroupNorm32(nn.GroupNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def normalization(c):
    return GroupNorm32(32, c)


def timestep_embedding(timesteps, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


# ------------------------------------------------------------------------------ ldm/modules/attention.py
class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim=None, heads=8, dim_head=64):
        super().__init__()
        inner = dim_head * heads
        context_dim = context_dim or query_dim
        self.scale, self.heads = dim_head ** -0.5, heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        h = self.heads
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (t.reshape(t.shape[0], t.shape[1], h, -1).permute(0, 2, 1, 3).reshape(t.shape[0] * h, t.shape[1], -1)
                   for t in (q, k, v))
        attn = (torch.einsum("bid,bjd->bij", q, k) * self.scale).softmax(dim=-1)
        out = torch.einsum("bij,bjd->bid", attn, v)
        out = out.reshape(-1, h, out.shape[1], out.shape[2]).permute(0, 2, 1, 3).reshape(-1, out.shape[1], h * out.shape[2])
        return self.to_out(out)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, n_heads, d_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads=n_heads, dim_head=d_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim=context_dim, heads=n_heads, dim_head=d_head)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, in_channels, n_heads, d_head, depth=1, context_dim=None):
        super().__init__()
        inner = n_heads * d_head
        self.norm = nn.GroupNorm(32, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, n_heads, d_head, context_dim)
                                                 for _ in range(depth)])
        self.proj_out = nn.Conv2d(inner, in_channels, 1)

    def forward(self, x, context=None):
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            y = block(y, context=context)
        return self.proj_out(y.transpose(1, 2).reshape(b, -1, h, w)) + x


# ----------------------------------------------------- ldm/modules/diffusionmodules/openaimodel_skip-dropout.py
class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb, context=None):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels, use_conv):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    def __init__(self, channels, use_conv):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x):
        return self.op(x)


class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, dropout, out_channels=None, use_scale_shift_norm=False, up=False, down=False):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(), nn.Conv2d(channels, self.out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm
                                                                   else self.out_channels))
        self.out_layers = nn.Sequential(normalization(self.out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if self.out_channels == channels
                                else nn.Conv2d(channels, self.out_channels, 1))

    def forward(self, x, emb):
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class UNetModel(nn.Module):
    """The released UNetModel with use_spatial_transformer=True and legacy=True (dim_head = ch // num_heads)."""

    def __init__(self, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions, dropout=0.0,
                 channel_mult=(1, 2, 4, 8), num_heads=8, use_scale_shift_norm=False, resblock_updown=False,
                 context_dim=None, skip_dropout=0.0, transformer_depth=1):
        super().__init__()
        self.model_channels, self.attention_resolutions = model_channels, attention_resolutions
        self.skip_dropout = skip_dropout
        ted = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, ted), nn.SiLU(), nn.Linear(ted, ted))

        def st(ch):
            return SpatialTransformer(ch, num_heads, ch // num_heads, depth=transformer_depth, context_dim=context_dim)

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        chans, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, ted, dropout, out_channels=mult * model_channels, use_scale_shift_norm=use_scale_shift_norm)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(st(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(
                    ResBlock(ch, ted, dropout, out_channels=ch, use_scale_shift_norm=use_scale_shift_norm, down=True)
                    if resblock_updown else Downsample(ch, True)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, ted, dropout, use_scale_shift_norm=use_scale_shift_norm), st(ch),
            ResBlock(ch, ted, dropout, use_scale_shift_norm=use_scale_shift_norm))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), ted, dropout, out_channels=model_channels * mult,
                                   use_scale_shift_norm=use_scale_shift_norm)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(st(ch))
                if level and i == num_res_blocks:
                    layers.append(ResBlock(ch, ted, dropout, out_channels=ch, use_scale_shift_norm=use_scale_shift_norm, up=True)
                                  if resblock_updown else Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(self, x, timesteps=None, context=None):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for module in self.output_blocks:
            skip = hs.pop()
            if self.training and skip.shape[-1] not in self.attention_resolutions:  # CustomChannelDropout
                skip = skip * (torch.rand(*skip.shape[:2], 1, 1) > self.skip_dropout).float() / (1 - self.skip_dropout)
            h = module(torch.cat([h, skip], dim=1), emb, context)
        return self.out(h)


# ---------------------------------------------------------------------------- ldm/modules/encoders/modules.py
class ImageEncoder(nn.Module):
    def __init__(self, latent_units, d=64, image_size=64, num_channels=3):
        super().__init__()
        layers, c = [], num_channels
        for i, c_out in enumerate((d, d * 2, d * 4, d * 4, d * 4)):
            conv = nn.Conv2d(c, c_out, 7, 1, 3) if i == 0 else nn.Conv2d(c, c_out, 4, 2, 1)
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c = c_out
        self.encoder = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.fc = nn.Sequential(nn.Linear(d * 4 * (image_size // 16) ** 2, 4096), nn.ReLU(inplace=True),
                                nn.Linear(4096, 256), nn.ReLU(inplace=True), nn.Linear(256, latent_units))

    def forward(self, x):
        return self.fc(self.flatten(self.encoder(x)))


class MLPModule(nn.Module):
    def __init__(self, input_dim=1, output_dim=32):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_dim, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                    nn.Linear(512, output_dim), nn.ReLU())

    def forward(self, x):
        return self.layers(x)


class FeatureExtractor(nn.Module):
    def __init__(self, latent_units=20, d=64, image_size=64, num_channels=3, context_dim=32):
        super().__init__()
        self.image_encoder = ImageEncoder(latent_units, d, image_size, num_channels)
        self.mlps = nn.ModuleList([MLPModule(1, context_dim) for _ in range(latent_units)])

    def forward(self, x):
        features = self.image_encoder(x)
        return torch.stack([mlp(features[:, i:i + 1]) for i, mlp in enumerate(self.mlps)], dim=1)


# --------------------------------------------------------------------------------------- ldm/modules/ema.py
class LitEma(nn.Module):
    def __init__(self, model, decay=0.9999):
        super().__init__()
        self.m_name2s_name = {}
        self.register_buffer("decay", torch.tensor(decay, dtype=torch.float32))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.int))
        for name, p in model.named_parameters():
            if p.requires_grad:
                s_name = name.replace(".", "")  # "." is not allowed in buffer names
                self.m_name2s_name[name] = s_name
                self.register_buffer(s_name, p.clone().detach().data)

    def copy_to(self, model):
        shadow = dict(self.named_buffers())
        for name, p in model.named_parameters():
            p.data.copy_(shadow[self.m_name2s_name[name]])


# ----------------------------------------------------------------------- ldm/models/diffusion/ddpm_dyga.py
class DiffusionWrapper(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.diffusion_model = unet

    def forward(self, x, t, c_crossattn):  # conditioning_key "adm"
        return self.diffusion_model(x, t, context=c_crossattn[0])


def make_beta_schedule(n_timestep, linear_start=1e-4, linear_end=2e-2):
    return (torch.linspace(linear_start ** 0.5, linear_end ** 0.5, n_timestep, dtype=torch.float64) ** 2).numpy()


class LatentDiffusion(nn.Module):
    """DDPM + LatentDiffusion's modules and buffers in their registration order (scale_by_std: True)."""

    def __init__(self, unet, first_stage, extractor, timesteps=1000, linear_start=0.0015, linear_end=0.0155,
                 scale_factor=1.0):
        super().__init__()
        self.model = DiffusionWrapper(unet)
        self.model_ema = LitEma(self.model)
        betas = make_beta_schedule(timesteps, linear_start, linear_end)
        alphas = 1.0 - betas
        ac = np.cumprod(alphas, axis=0)
        ac_prev = np.append(1.0, ac[:-1])
        t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        self.register_buffer("betas", t(betas))
        self.register_buffer("alphas_cumprod", t(ac))
        self.register_buffer("alphas_cumprod_prev", t(ac_prev))
        self.register_buffer("sqrt_alphas_cumprod", t(np.sqrt(ac)))
        self.register_buffer("sqrt_one_minus_alphas_cumprod", t(np.sqrt(1.0 - ac)))
        self.register_buffer("log_one_minus_alphas_cumprod", t(np.log(1.0 - ac)))
        self.register_buffer("sqrt_recip_alphas_cumprod", t(np.sqrt(1.0 / ac)))
        self.register_buffer("sqrt_recipm1_alphas_cumprod", t(np.sqrt(1.0 / ac - 1)))
        posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
        self.register_buffer("posterior_variance", t(posterior_variance))
        self.register_buffer("posterior_log_variance_clipped", t(np.log(np.maximum(posterior_variance, 1e-20))))
        self.register_buffer("posterior_mean_coef1", t(betas * np.sqrt(ac_prev) / (1.0 - ac)))
        self.register_buffer("posterior_mean_coef2", t((1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac)))
        self.register_buffer("shift_coef", -t(np.sqrt(alphas)) * (1.0 - self.alphas_cumprod_prev)
                             / torch.sqrt(1.0 - self.alphas_cumprod))
        self.register_buffer("ddim_coef", -self.sqrt_one_minus_alphas_cumprod)
        self.register_buffer("scale_factor", torch.tensor(scale_factor))
        self.first_stage_model = first_stage
        self.cond_stage_model = extractor


def tiny_disdis(seed=0, units=3, unit_dim=8, resblock_updown=True, attention=(1,), num_heads=4, timesteps=1000):
    """A small released model (16x16 images, 8x8 latents): a U-Net with every weight random (nothing
    zero-initialised) and an EMA that differs from it; an extractor whose BatchNorm statistics are those of
    random images and whose tokens vary with the image and stay > 0 (so that the released lambda is not ~0)."""
    torch.manual_seed(seed)
    unet = UNetModel(in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1, attention_resolutions=list(attention),
                     dropout=0.1, channel_mult=(1, 2), num_heads=num_heads, use_scale_shift_norm=True,
                     resblock_updown=resblock_updown, context_dim=unit_dim, skip_dropout=0.2)
    first = TamingVQModel(ch=32, ch_mult=(1, 2), num_res_blocks=1, embed_dim=3, n_embed=64)
    first.loss = nn.Identity()  # the released LDM config's lossconfig: torch.nn.Identity
    extractor = FeatureExtractor(latent_units=units, d=8, image_size=16, context_dim=unit_dim)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn_like(p) * 0.3 / max(1, p[0].numel()) ** 0.5)
        norms = [m for m in extractor.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in norms:
            m.momentum = None  # running statistics = those of the batch below
        extractor.train()(torch.rand(256, 3, 16, 16) * 2 - 1)
        for m in norms:
            m.momentum = 0.1
            m.weight.uniform_(0.8, 1.2)
            m.bias.normal_(0, 0.1)
            m.num_batches_tracked.fill_(1234)
        extractor.image_encoder.fc[4].weight.mul_(10.0)  # scalars of spread ~0.5
        for mlp in extractor.mlps:
            mlp.layers[4].bias.uniform_(1.0, 2.0)
    ldm = LatentDiffusion(unet, first, extractor, timesteps=timesteps, scale_factor=0.8731)
    with torch.no_grad():
        for name, buf in ldm.model_ema.named_buffers():
            if name not in ("decay", "num_updates"):
                buf.add_(torch.randn_like(buf) * 0.05)
        ldm.model_ema.num_updates.fill_(45678)
    return ldm.eval()


def lightning_checkpoint(ldm, epoch=12, step=45678):
    """The dict Lightning 1.6-1.9 saves: the released main.py's ModelCheckpoint state and the AdamW state of
    the U-Net and extractor parameters (as torch writes it after a step)."""
    params = list(ldm.model.parameters()) + list(ldm.cond_stage_model.parameters())
    adam = {"state": {i: {"step": torch.tensor(float(step)), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                      for i, p in enumerate(params)},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0.01, "amsgrad": False,
                              "foreach": None, "maximize": False, "capturable": False, "differentiable": False,
                              "fused": None, "params": list(range(len(params)))}]}
    key = ("ModelCheckpoint{'monitor': 'train/epoch_num', 'mode': 'min', 'every_n_train_steps': 0, "
           "'every_n_epochs': 1, 'train_time_interval': None, 'save_on_train_epoch_end': True}")
    return {
        "epoch": epoch,
        "global_step": step,
        "pytorch-lightning_version": "1.6.5",
        "state_dict": OrderedDict(ldm.state_dict()),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_loop.state_dict": {"_batches_that_stepped": step},
                               "epoch_progress": {"total": {"ready": epoch + 1, "completed": epoch}}}},
        "callbacks": {key: {"monitor": "train/epoch_num", "best_model_score": torch.tensor(float(epoch)),
                            "best_model_path": f"logs/checkpoints/epoch={epoch:06}.ckpt", "current_score": None,
                            "dirpath": "logs/checkpoints", "best_k_models": {}, "kth_best_model_path": "",
                            "kth_value": torch.tensor(float("inf")), "last_model_path": "logs/checkpoints/last.ckpt"}},
        "optimizer_states": [adam],
        "lr_schedulers": [],
    }


def write_checkpoint(ldm, path, **kw):
    torch.save(lightning_checkpoint(ldm, **kw), path)
    return path


def fitted_gaussians(ldm, images, counts=(2, 3, 4), seed=0):
    """Per-unit mixtures as the released DyGA leaves them after a fit on ``images``: in its normalized units
    ((c - max) / (max - min + 1e-6) over the fitted set), means at data points (its initialisation), full
    covariances, weights summing to 1."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        tokens = ldm.cond_stage_model(images)
    out = []
    for i, k in enumerate(counts):
        z = tokens[:, i]
        z = ((z - z.max()) / (z.max() - z.min() + 1e-6)).double().numpy()
        means = z[rng.choice(len(z), k, replace=False)]
        cov = np.cov(z, rowvar=False)
        sigma = np.stack([0.25 * cov * rng.uniform(0.5, 2.0) + 1e-5 * np.eye(z.shape[1]) for _ in range(k)])
        pi = rng.uniform(0.5, 1.0, k)
        out.append((means.astype(np.float32), sigma.astype(np.float32), (pi / pi.sum()).astype(np.float32)))
    return out


def write_gaussians(mixtures, path):
    """As ``parallel_process`` in ddpm_dyga.py: torch.cat over units of means / covariances / weights, and K."""
    np.savez(path, means=np.concatenate([m for m, _, _ in mixtures]), sigma=np.concatenate([s for _, s, _ in mixtures]),
             pi=np.concatenate([w for _, _, w in mixtures]), K=np.array([len(m) for m, _, _ in mixtures]))
    return path


def released_alignment(tokens, mixtures):
    """ddpm_dyga.py's forward/validation_step on the tokens (B, N, D): per unit, batch min/max normalization and
    ``DyGA.predict0`` (argmax of MultivariateNormal(mean, sigma + 1e-6 I) log-likelihood + log pi), then one
    lambda for the batch. Returns (aligned (B, N, D), chosen component (B, N), lambda)."""
    quant, chosen = [], []
    for i, (means, sigma, pi) in enumerate(mixtures):
        x = tokens[:, i]
        x = (x - x.max()) / (x.max() - x.min() + 1e-6)
        mu, cov, w = (torch.from_numpy(a) for a in (means, sigma, pi))
        eye = torch.eye(cov.shape[-1])
        ll = torch.stack([torch.distributions.MultivariateNormal(mu[k], cov[k] + 1e-6 * eye).log_prob(x)
                          for k in range(len(mu))]).t()
        resp = torch.exp(ll + torch.log(w)[None] - torch.logsumexp(ll + torch.log(w)[None], dim=1, keepdim=True))
        k = resp.argmax(dim=1)
        chosen.append(k)
        quant.append(mu[k])
    cq = torch.stack(quant, dim=1)
    lam = 1 / 10 * torch.exp(-torch.mean(torch.abs((tokens - cq) / (tokens + 1e-6))))
    return lam * cq + (1 - lam) * tokens, torch.stack(chosen, dim=1), lam
