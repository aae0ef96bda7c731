"""Training and DDIM sampling throughput of the latent diffusion model, quickstart- and paper-sized.

    python benchmarks/train_bench.py                          # CPU, both sizes, plus U-Net references
    python benchmarks/train_bench.py --device cuda --bf16 --channels-last --batch 128
    python benchmarks/train_bench.py --device cuda --bf16 --channels-last --sizes proof --batch 512 \
        --ddim-batch 256 --loader-workers 8 --first-stage --flops           # the GPU proof run's sizes
    python benchmarks/train_bench.py --stages [stage_bench options]   # = benchmarks/stage_bench.py: one CPU
        # step stage by stage (ms, GFLOP/s against the matmul rate), bare and inside ldm-dis train

Rows:
  * ldm train step: one full LDMTask.training_step (frozen VQ-GAN encode, extractor, bottleneck=none,
    U-Net forward/backward, AdamW, the U-Net's EMA update), images/s;
  * ddim: EMA U-Net, ``diffusion.sample_steps`` DDIM steps + VQ-GAN decode, images/s;
  * reference rows (--reference, paper size): U-Net forward+backward alone for our eager U-Net, the
    same under torch.compile, and diffusers' UNet2DConditionModel configured like Table 8;
  * --loader-workers N: the train step fed by the training DataLoader (synth-shapes3d rendered in N
    workers, pinned memory), with the share of time spent waiting for data;
  * --first-stage: one VQ-GAN step (autoencoder + discriminator) at the size's first-stage config;
  * --flops: FLOPs per image of the train step, a DDIM step and the extractor (FlopCounterMode).
Sizes: quickstart (configs/quickstart.yaml), paper (shapes3d.yaml), proof (proof_gpu.yaml: paper size
with the released extractor head). On CUDA, LDMTask's AdamW is fused.
Weights are random (speed does not depend on them). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldm_dis  # noqa: E402,F401  (before torch: it sets the OpenMP wait policy the trainer runs with)
import torch  # noqa: E402
from _common import StepAccelerator  # noqa: E402

from ldm_dis.config.loading import load_config  # noqa: E402
from ldm_dis.models.unet import UNet  # noqa: E402
from ldm_dis.models.vqgan import FirstStage  # noqa: E402
from ldm_dis.sampling.ddim import ddim_sample  # noqa: E402
from ldm_dis.training.ldm_task import LDMTask  # noqa: E402

SIZES = {"quickstart": "quickstart.yaml", "paper": "shapes3d.yaml", "proof": "proof_gpu.yaml"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int, device) -> float:
    """Seconds per call (median of ``repeats`` after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def build_task(size: str, args, tmp: Path) -> LDMTask:
    cfg = load_config(SIZES[size], ["model.bottleneck.kind=none", f"train.channels_last={args.channels_last}",
                                    f"train.compile={args.compile}"])
    first = FirstStage.from_config(cfg.model.first_stage)
    from safetensors.torch import save_file

    path = tmp / f"{size}_first_stage.safetensors"
    save_file({k: v.contiguous() for k, v in first.state_dict().items()}, str(path))
    task = LDMTask(cfg, None, first_stage_path=path)
    task.prepare(StepAccelerator(args.device, args.bf16))
    return task


def bench_size(size: str, args, tmp: Path, rows: list) -> None:
    task = build_task(size, args, tmp)
    cfg, dev = task.cfg, args.device
    r = cfg.data.resolution
    batch = args.batch or (64 if size == "quickstart" else 16)
    images = torch.rand(batch, 3, r, r, device=dev) * 2 - 1
    acc = task.accelerator
    step = lambda: task.training_step(images, None, 0, acc)  # noqa: E731
    sec = timed(step, args.repeats, 2, dev)
    n_params = sum(p.numel() for p in task.unet.parameters())
    rows.append((size, "ldm train step", batch, f"{batch / sec:.1f}", f"U-Net {n_params / 1e6:.1f}M"))

    steps = args.ddim_steps or cfg.model.diffusion.sample_steps
    ddim_batch = min(batch, args.ddim_batch)
    imgs = images[:ddim_batch]
    units = task.encode(imgs)
    x_T = torch.randn(ddim_batch, cfg.model.first_stage.embed_dim, task.latent_size, task.latent_size, device=dev)

    def sample():
        with acc.autocast(), torch.no_grad():
            z = ddim_sample(task.ema_unet.shadow, task.ddim_scheduler, units, x_T, steps, 0.0)
            task.first_stage.decode_scaled(z.float())

    sec = timed(sample, max(1, args.repeats // 2), 1, dev)
    rows.append((size, f"ddim {steps} steps + decode", ddim_batch, f"{ddim_batch / sec:.2f}", ""))


def diffusers_reference_unet(cfg):
    """diffusers' UNet2DConditionModel in Table 8's shape (64, [1,2,4,4], 2 res blocks, cross-attn at the
    first three levels and the middle, 8 heads, context 32, scale-shift time embedding)."""
    from diffusers import UNet2DConditionModel

    u = cfg.model.unet
    channels = [u.base_channels * m for m in u.channel_mult]
    attn_levels = [2**i in set(u.attention_downsample) for i in range(len(channels))]
    return UNet2DConditionModel(
        sample_size=cfg.data.resolution // 4,
        in_channels=cfg.model.first_stage.embed_dim,
        out_channels=cfg.model.first_stage.embed_dim,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn_levels),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn_levels)),
        block_out_channels=tuple(channels),
        layers_per_block=u.num_res_blocks,
        cross_attention_dim=cfg.model.encoder.unit_dim,
        attention_head_dim=[c // u.num_heads for c in channels],
        resnet_time_scale_shift="scale_shift",
        norm_num_groups=32,
    )


def bench_references(args, rows: list) -> None:
    cfg = load_config(SIZES["paper"])
    dev = args.device
    batch = args.batch or 16
    side = cfg.data.resolution // 4
    x = torch.randn(batch, cfg.model.first_stage.embed_dim, side, side, device=dev)
    t = torch.randint(0, 1000, (batch,), device=dev)
    ctx = torch.randn(batch, cfg.model.encoder.num_units, cfg.model.encoder.unit_dim, device=dev)
    ours = UNet.from_config(cfg.model.unet, cfg.model.first_stage.embed_dim, cfg.model.encoder.unit_dim).to(dev)
    theirs = diffusers_reference_unet(cfg).to(dev)
    if args.channels_last:
        ours, theirs = ours.to(memory_format=torch.channels_last), theirs.to(memory_format=torch.channels_last)
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    candidates = [("our U-Net, eager", lambda: ours(x, t, ctx), ours),
                  ("diffusers UNet2DConditionModel, eager", lambda: theirs(x, t, encoder_hidden_states=ctx).sample, theirs)]
    if args.compile_reference:
        compiled = torch.compile(ours)
        candidates.insert(1, ("our U-Net, torch.compile", lambda: compiled(x, t, ctx), ours))
    steps = {}
    for name, fwd, module in candidates:
        def step(fwd=fwd, module=module):
            with autocast():
                out = fwd()
            out.float().square().mean().backward()
            module.zero_grad(set_to_none=True)

        for _ in range(3 if "compile" in name else 2):  # warm-up (and compilation)
            step()
        steps[name] = step
    # interleaved rounds: on a shared machine the load drifts; every candidate sees the same drift
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            sync(dev)
            times[name].append(time.perf_counter() - start)
    for name, fwd, module in candidates:
        sec = sorted(times[name])[len(times[name]) // 2]
        n = sum(p.numel() for p in module.parameters())
        rows.append(("paper", f"U-Net fwd+bwd: {name}", batch, f"{batch / sec:.1f}", f"{n / 1e6:.1f}M params"))


# ------------------------------------------------------------------------- GPU-oriented rows
# (``--loader-workers``, ``--first-stage``, ``--flops``; they run on a CPU too, at tiny sizes in the tests)

def flops_per_image(fn, batch: int) -> float:
    """FLOPs of one call of ``fn`` per image, counted by torch's FlopCounterMode (matmuls, convolutions,
    attention; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / batch


def _rate_note(seconds: float, flops: float | None, batch: int) -> str:
    if flops is None:
        return ""
    return f"{flops / 1e9:.2f} GFLOP/image, {flops * batch / seconds / 1e12:.2f} TFLOP/s"


def bench_loader(size: str, args, tmp: Path, rows: list) -> None:
    """The training step fed by the trainer's own loader: synth-shapes3d rendered in ``--loader-workers``
    worker processes, pinned memory, non-blocking copies; also the share of the time spent waiting for data."""
    from ldm_dis.data import build_dataset
    from ldm_dis.training.data_order import training_loader

    task = build_task(size, args, tmp)
    cfg, dev, acc = task.cfg, args.device, task.accelerator
    batch = args.batch or (64 if size == "quickstart" else 16)
    dataset = build_dataset({"name": "synth-shapes3d", "resolution": cfg.data.resolution})
    batches = iter(training_loader(dataset, batch, 0, 0, acc, args.loader_workers))
    for step in range(2):  # warm-up: workers start, kernels are chosen
        images, _ = next(batches)
        task.training_step(images.to(dev, non_blocking=True), None, step, acc)
    sync(dev)
    steps = max(3, args.repeats * 2)
    waited, start = 0.0, time.perf_counter()
    for step in range(steps):
        fetch = time.perf_counter()
        images, _ = next(batches)
        waited += time.perf_counter() - fetch
        task.training_step(images.to(dev, non_blocking=True), None, step, acc)
    sync(dev)
    seconds = time.perf_counter() - start
    rows.append((size, f"ldm train step, data from {args.loader_workers} workers", batch, f"{batch * steps / seconds:.1f}",
                 f"{100 * waited / seconds:.0f}% of the time waiting for data"))


def bench_first_stage(size: str, args, rows: list) -> None:
    """One VQ-GAN training step (autoencoder and discriminator updates) at the size's first-stage config."""
    from _common import StepAccelerator

    from ldm_dis.training.vqgan_task import VQGANTask

    cfg = load_config(SIZES[size], [f"train.channels_last={args.channels_last}"])
    task = VQGANTask(cfg)
    task.prepare(StepAccelerator(args.device, args.bf16))
    r, dev = cfg.data.resolution, args.device
    batch = args.fs_batch or cfg.model.first_stage.batch_size
    images = torch.rand(batch, 3, r, r, device=dev) * 2 - 1
    step = lambda: task.training_step(images, None, 1, task.accelerator)  # noqa: E731
    flops = flops_per_image(step, batch) if args.flops else None
    sec = timed(step, args.repeats, 2, dev)
    rows.append((size, "vq-gan train step (with discriminator)", batch, f"{batch / sec:.1f}", _rate_note(sec, flops, batch)))


def bench_flops(size: str, args, tmp: Path, rows: list) -> None:
    """FLOPs per image of the LDM train step and of one DDIM step + decode share (counted, not timed)."""
    task = build_task(size, args, tmp)
    cfg, dev, acc = task.cfg, args.device, task.accelerator
    r, batch = cfg.data.resolution, 2
    images = torch.rand(batch, 3, r, r, device=dev) * 2 - 1
    train = flops_per_image(lambda: task.training_step(images, None, 0, acc), batch)
    units = task.encode(images)
    x_T = torch.randn(batch, cfg.model.first_stage.embed_dim, task.latent_size, task.latent_size, device=dev)
    with torch.no_grad():
        step = flops_per_image(lambda: ddim_sample(task.ema_unet.shadow, task.ddim_scheduler, units, x_T, 1, 0.0), batch)
        encode = flops_per_image(lambda: task.encode(images), batch)
    rows.append((size, "FLOPs counted", batch, "", f"train step {train / 1e9:.2f} GFLOP/image; DDIM step "
                 f"{step / 1e9:.3f} GFLOP/image; extractor encode {encode / 1e9:.3f} GFLOP/image"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--stages" in argv:  # the per-stage breakdown has its own script and options
        import stage_bench

        return stage_bench.main([a for a in argv if a != "--stages"])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="quickstart,paper", help="comma-separated; empty for reference rows only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 64 quickstart, 16 paper)")
    p.add_argument("--ddim-batch", type=int, default=8)
    p.add_argument("--ddim-steps", type=int, default=None, help="default: the config's diffusion.sample_steps")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net inside the training step")
    p.add_argument("--reference", action="store_true", help="add U-Net-only rows: ours vs diffusers")
    p.add_argument("--compile-reference", action="store_true", help="with --reference: also our U-Net compiled")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--loader-workers", type=int, default=None,
                   help="add a train-step row fed by the training DataLoader with this many workers")
    p.add_argument("--first-stage", action="store_true", help="add a VQ-GAN train-step row per size")
    p.add_argument("--fs-batch", type=int, default=None, help="VQ-GAN batch (default: the config's)")
    p.add_argument("--flops", action="store_true", help="add FLOPs per image (counted by FlopCounterMode)")
    args = p.parse_args(argv)
    args.device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in filter(None, args.sizes.split(",")):
            bench_size(size, args, Path(tmp), rows)
            if args.loader_workers is not None:
                bench_loader(size, args, Path(tmp), rows)
            if args.first_stage:
                bench_first_stage(size, args, rows)
            if args.flops:
                bench_flops(size, args, Path(tmp), rows)
    if args.reference:
        bench_references(args, rows)
    dev = torch.cuda.get_device_name() if args.device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"device: {dev}; torch {torch.__version__}; bf16={args.bf16} channels_last={args.channels_last} compile={args.compile}\n")
    print("| size | what | batch | images/s | note |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
