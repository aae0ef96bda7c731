"""Typed configuration schema (OmegaConf structured configs).

Every YAML config file is merged onto :class:`Config`; an unknown key or a value of the wrong
type fails at load time (see :mod:`ldm_dis.config.loading`). Defaults are the paper's values
(its Tables 7-9 and the released code) unless a comment says otherwise. Components are chosen by *name*
(``model.kind``, ``model.bottleneck.kind``, ``data.name``) from the package's own registries; a config
never names an import path.

Each section belongs to one part of the package; change a section together with the code that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


# --------------------------------------------------------------------------------------------- run
@dataclass
class RunConfig:
    dir: str = "runs/default"  # run folder: resolved config, checkpoints, logs, pictures
    name: str = "default"
    # finished first stages (VQ-GAN) shared by runs, one folder per config hash; None = the user cache folder:
    # $LDM_DIS_CACHE/first_stage, else $XDG_CACHE_HOME/ldm_dis/first_stage, else ~/.cache/ldm_dis/first_stage
    first_stage_cache: Optional[str] = None


# -------------------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    name: str = "synth-shapes3d"  # registry name: shapes3d, mpi3d, cars3d, dsprites, celeba, arrays, synth-*
    path: Optional[str] = None  # file or folder of a real dataset
    resolution: Optional[int] = None  # images served at resolution x resolution; None = the data's own (synth-*: 64)
    num_workers: int = 2
    # arrays loader only: key of the image array, key of the label array, or factor sizes for row-major order
    images_key: str = "images"
    labels_key: Optional[str] = None
    factor_sizes: Optional[List[int]] = None
    factor_names: Optional[List[str]] = None
    cache_dir: Optional[str] = None  # where `ldm-dis data prepare` writes uncompressed .npy caches
    subset: Optional[int] = None  # train on `subset` images drawn at random across all factors (fixed seed); None = all


# ------------------------------------------------------------------------------- first stage (VQ-GAN)
@dataclass
class FirstStageConfig:
    """VQ-GAN of paper Table 7, built on diffusers.VQModel."""

    checkpoint: Optional[str] = None  # reuse this first stage (ours or a taming .ckpt); None = train it in run.dir
    embed_dim: int = 3
    n_embed: int = 2048
    # "uniform": taming's init, U(-1/n_embed, 1/n_embed); "data": the entries are encoder outputs of the
    # first training batch (drawn at random), so every code starts where the latents are; for short schedules
    codebook_init: str = "uniform"
    base_channels: int = 32
    channel_mult: List[int] = field(default_factory=lambda: [1, 2, 4])
    num_res_blocks: int = 2
    dropout: float = 0.0
    codebook_weight: float = 1.0
    disc_weight: float = 0.75
    disc_start: int = 0
    disc_channels: int = 64
    disc_layers: int = 3
    perceptual_weights: Optional[str] = None  # local LPIPS/VGG weights file; None = no perceptual loss
    perceptual_weight: float = 1.0
    lr: float = 4.5e-6  # per-sample rate as in the taming configs; scaled by batch size
    batch_size: int = 64
    max_steps: int = 100_000
    max_minutes: Optional[float] = None  # wall-clock budget of its training, as train.max_minutes
    log_every: int = 50
    ckpt_every: int = 1000


# ------------------------------------------------------------------------------- feature extractor
@dataclass
class EncoderConfig:
    """CNN feature extractor of paper Table 9 and the released code; the defaults build the released one
    (23.6M parameters at N = 20, 64x64)."""

    num_units: int = 20  # N latent units
    unit_dim: int = 32  # D, also the cross-attention context dim
    stem_channels: int = 64  # conv 7x7 stride 1
    channels: List[int] = field(default_factory=lambda: [128, 256, 256, 256])  # conv 4x4 stride 2 each
    hidden: int = 256  # FC ... -> hidden -> ReLU -> FC hidden -> N
    # the released first FC, flat (4096 at 64x64) -> extra_fc_width -> ReLU, before FC -> hidden; false = a
    # smaller head (flat -> hidden), a CPU choice
    extra_fc: bool = True
    extra_fc_width: int = 4096
    unit_mlp: List[int] = field(default_factory=lambda: [256, 512])  # per-unit MLP 1 -> 256 -> 512 -> D
    final_relu: bool = True  # ReLU after the unit MLP's last layer (released MLPModule): tokens >= 0


# -------------------------------------------------------------------------------------------- U-Net
@dataclass
class UNetConfig:
    """Denoising U-Net of paper Table 8 with Skip Dropout (paper Sec. 3.3)."""

    base_channels: int = 64
    channel_mult: List[int] = field(default_factory=lambda: [1, 2, 4, 4])
    num_res_blocks: int = 2
    attention_downsample: List[int] = field(default_factory=lambda: [1, 2, 4])  # cross-attn at these factors
    num_heads: int = 8
    use_scale_shift_norm: bool = True
    dropout: float = 0.1
    skip_dropout: float = 0.2  # drop rate p of Skip Dropout; 0 disables it
    # downsample factors whose skips are dropped; None = as `protocol` says: paper, the levels without
    # cross-attention ([8] for Table 8); released, the released code's comparison of spatial sizes with
    # attention_downsample, which at 16x16 latents drops factors [1, 2] (skip_dropout.released_code_levels)
    skip_dropout_levels: Optional[List[int]] = None
    backbone_dropout: float = 0.0  # Table 12 ablation: dropout on the backbone path instead
    # resample with ResBlocks (avg-pool / nearest inside a ResBlock, openai's resblock_updown) instead of a
    # strided conv / conv after upsampling; null = as `protocol` says (paper: false, released: true)
    resblock_updown: Optional[bool] = None


# ---------------------------------------------------------------------------------------- diffusion
@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0155
    beta_schedule: str = "scaled_linear"  # the LDM "linear" schedule
    prediction_type: str = "epsilon"
    loss: str = "l1"  # l1 | l2 (mean over all elements, as the released code)
    sample_steps: int = 100  # DDIM steps
    eta: float = 0.0
    scale_by_std: bool = True  # latents scaled by 1/std of the first batch
    # how training draws t: "uniform" (the papers) or "logit_normal" (t/T = sigmoid(N(mean, std)), Esser et
    # al. 2024), which spends the steps on the middle of the schedule; it did not help the 700-step CPU
    # quickstart (docs/results.md), which keeps "uniform"
    timestep_sampling: str = "uniform"
    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0
    # weight of each timestep's loss (normalised to mean 1 over the schedule): "none" (the papers),
    # "min_snr" (min(SNR, min_snr_gamma) / SNR) or "pdae" (SNR^g / (1 + SNR), g = pdae_gamma, PDAE's code),
    # which favours the noisy steps where the denoiser needs the units most
    loss_weighting: str = "none"
    min_snr_gamma: float = 5.0
    pdae_gamma: float = 0.1


# --------------------------------------------------------------------------------------- bottlenecks
@dataclass
class DyGAConfig:
    """Dynamic Gaussian Anchoring (paper Sec. 3.2, Algorithms 1-3; ldm_dis/bottlenecks/dyga). Densities are measured on
    features centered by their median and divided by their median distance to it (per unit)."""

    k_init: int = 8  # K0, seeded by k-means++ (released code: 8)
    k_max: int = 32
    phi: float = 0.5  # responsibility threshold for cluster membership
    psi: float = 0.5  # density threshold for splitting
    # "arbitrary" split probability per Gaussian and round; the paper gives no value, the released code
    # split with 0.5 but stopped after 3 splits in all
    random_split_prob: float = 0.05
    max_split_rounds: int = 10
    min_count: float = 10.0  # filter components with a smaller soft count (released code: 10 points)
    em_iters: int = 100  # EM iterations at most per fit
    tol: float = 1e-3  # EM stops when the mean log-likelihood per point improves less than this
    dim_threshold: float = 0.2  # Cattell scree-test threshold (HDclassif's default)
    reg_covar: float = 1e-6  # eigenvalue floor, relative to the mean per-coordinate variance
    search_samples: int = 20_000  # initial fit and split rounds on this many points; EM refits on all
    # EM iterations at most of those refits on all points (None = em_iters): they polish a mixture that
    # converged on the subsample; on one Gaussian blob EM would creep on for tens of full-data iterations
    refit_iters: Optional[int] = 2
    # "torch": every unit at once on the bottleneck's device (batched_fit.py; float32 per-point work);
    # "numpy": one unit at a time, in num_workers processes (hddc.py, anchor_selection.py)
    fitter: str = "torch"
    tau: float = 1e-4  # Gumbel-softmax temperature
    lam: float = 0.1  # lambda: maximum pull toward the anchor
    # "paper": Gumbel-softmax anchor, lambda per sample and unit, normalization stored with the anchors;
    # "released": the released code's argmax anchor, one lambda per batch, the batch's min/max; null = as
    # `protocol` says
    alignment: Optional[str] = None
    fit_every_epochs: int = 1  # r (5 for Cars3D; train.epoch_steps sets the length of an epoch)
    max_samples: int = 100_000  # features collected per fit
    num_workers: int = 2  # fitter numpy: processes fitting units in parallel (1 = in the trainer's process)
    seed: int = 0


@dataclass
class FactorQConfig:
    """Global scalar codebook + total-correlation discriminator on the N scalars (FactorQVAE)."""

    codebook_size: int = 64  # K scalars shared by all units
    beta: float = 1e-3  # weight of KL(q || uniform), averaged over units (FactorQVAE code, Shapes3D)
    gamma: float = 1e-4  # weight of the discriminator's total-correlation estimate
    tau_decay: float = 1e-5  # Gumbel-softmax temperature tau = max(exp(-tau_decay * step), tau_min)
    tau_min: float = 0.0
    disc_hidden: int = 1000  # discriminator: disc_layers linear layers, LeakyReLU 0.2
    disc_layers: int = 6
    disc_lr: float = 1e-4


@dataclass
class FSQConfig:
    """Finite scalar quantization (Mentzer et al. 2023) of each unit's token (paper Table 11).

    Each token (D values) is projected to len(levels) values, bounded by tanh to level_i points, rounded
    with straight-through gradients, and projected back to D."""

    levels: List[int] = field(default_factory=lambda: [8, 5, 5])


@dataclass
class BottleneckConfig:
    kind: str = "dyga"  # none | dyga | factorq | fsq
    dyga: DyGAConfig = field(default_factory=DyGAConfig)
    factorq: FactorQConfig = field(default_factory=FactorQConfig)
    fsq: FSQConfig = field(default_factory=FSQConfig)


# ---------------------------------------------------------------------------------- VAE baselines
@dataclass
class BaselineConfig:
    """The VAE family; used when model.kind is not `ldm`. See ldm_dis/baselines/README.md.

    Loss convention (the FactorQVAE code's, so its published weights mean the same here): the
    reconstruction term is a per-element mean over pixels in [0, 1] scale; latent terms are multiplied
    by the weights below as they are."""

    latent_dim: Optional[int] = None  # None = 2 x number of factors
    base_channels: int = 32  # conv encoder/decoder width (channels: c, c, 2c, 2c)
    hidden: int = 256  # fully connected width between the convolutions and the latent
    likelihood: str = "gaussian"  # gaussian: MSE (FactorQVAE code) | bernoulli: BCE with logits (QLAE code)
    beta: float = 1e-3  # KL weight (betavae, factorvae, dvae, qvae, factorqvae, factordvae); betatcvae: dimension-wise KL
    alpha: float = 1.0  # beta-TCVAE mutual-information weight
    tc_weight: float = 1e-4  # total-correlation weight (gamma): betatcvae, factorvae, factorqvae, factordvae
    disc_hidden: int = 1000  # TC discriminator: disc_layers linear layers, LeakyReLU 0.2
    disc_layers: int = 6
    disc_lr: float = 1e-4
    codebook_size: int = 64  # global scalar codebook (qvae, factorqvae) / categories per latent (dvae, factordvae)
    qlae_values: int = 10  # per-dimension codebook size of QLAE, initialized to linspace(-0.5, 0.5)
    commit_weight: float = 0.01  # QLAE commitment ||z - sg(z_q)||^2
    quant_weight: float = 0.01  # QLAE quantization ||sg(z) - z_q||^2
    weight_decay: float = 0.1  # QLAE AdamW weight decay on weights only (0.001 on MPI3D)
    tau_decay: float = 1e-5  # Gumbel temperature tau = exp(-tau_decay * step)
    bioae_activity: float = 0.01  # BioAE activity penalty mean(z^2)
    bioae_nonneg: float = 1.0  # BioAE non-negativity penalty mean(relu(-z))
    lr_anneal_steps: int = 50_000  # cosine annealing of train.lr to lr_min over these steps (FactorQVAE code)
    lr_min: float = 1.25e-6


@dataclass
class ModelConfig:
    kind: str = "ldm"  # ldm | ae | betavae | betatcvae | factorvae | bioae | qlae | dvae | qvae | factorqvae | factordvae
    first_stage: FirstStageConfig = field(default_factory=FirstStageConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


# -------------------------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    max_steps: int = 100_000
    # wall-clock budget of one training call: it stops at a checkpoint once this many minutes have passed
    # (the run's log records the steps reached); None = until max_steps
    max_minutes: Optional[float] = None
    batch_size: int = 512  # global batch, split evenly across processes
    lr: float = 1e-4
    extractor_lr: Optional[float] = None  # learning rate of the feature extractor; None = train.lr
    weight_decay: float = 0.0
    adam_betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 0
    grad_clip: Optional[float] = None
    ema_decay: float = 0.9999  # EMA of the U-Net (sampling and pictures)
    # also keep an EMA of the feature extractor, and fit DyGA's anchors on, score and draw with it; the
    # released code keeps none and uses the live extractor for all of them
    ema_feature_extractor: bool = False
    seed: int = 0
    # no | fp16 | bf16; None = what accelerate was told (accelerate launch --mixed_precision, accelerate
    # config, ACCELERATE_MIXED_PRECISION), "no" when nothing was
    mixed_precision: Optional[str] = None
    channels_last: bool = False
    compile: bool = False
    epoch_steps: Optional[int] = None  # an "epoch" of this many steps (huge datasets); None = one pass
    log_every: int = 50  # steps between records in run.dir/log.jsonl (loss terms averaged over them)
    ckpt_every: int = 5000  # the last step is always checkpointed
    keep_last: int = 3  # newest K checkpoints kept
    sample_every: int = 5000  # run.dir/samples/step_XXXXXXX.png; 0 = never
    num_sample_images: int = 16
    # with each sample grid of an LDM: a latent-interchange grid of this many image pairs (the first of the
    # sample images), run.dir/samples/interchange_XXXXXXX.png and the trackers; 0 = none
    sample_interchange_pairs: int = 2
    # experiment trackers that receive the logged scalars, sample and interchange grids beside log.jsonl: comma separated
    # accelerate names (tensorboard, wandb, comet_ml, aim, mlflow, clearml, dvclive, ...) or "all" (every
    # installed one); None = log.jsonl only
    log_with: Optional[str] = None


# --------------------------------------------------------------------------------------------- eval
@dataclass
class EvalConfig:
    metrics: List[str] = field(
        default_factory=lambda: ["factorvae", "dci", "mig", "sap", "modularity", "infomec"]
    )
    fast: bool = False
    seed: int = 0
    # per-unit PCA of vector units: "sample", fitted on each metric's evaluation sample (paper, prior
    # work); "all", fitted once on the codes of the whole dataset (released code); null = as `protocol` says
    unit_pca: Optional[str] = None
    # InfoMEC's active codes: "range", range > largest / 20 (Hsu et al.); "iqr", interquartile range >
    # largest / 10 (released code); null = as `protocol` says
    infomec_active: Optional[str] = None
    # protocol values per metric, as `ldm-dis evaluate --set metric.key=value`, e.g. {dci: {num_train: 2000}}
    metric_protocol: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    jobs: int = -1  # worker threads/processes of the metrics (-1: all cores)


@dataclass
class Config:
    # "paper": the paper's text; "released": every behaviour of the released code that produced the paper's
    # tables (ldm_dis/config/protocol.py lists them); keys set explicitly win over either
    protocol: str = "paper"
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
