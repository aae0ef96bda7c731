"""Two real CPU processes (gloo): the tasks' explicit gradient averaging and buffer broadcast keep the
processes' weights identical after steps on different data, as DDP would."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class _TwoProcessAccelerator:
    def __init__(self, rank):
        self.device, self.num_processes, self.process_index = torch.device("cpu"), 2, rank
        self.is_main_process = rank == 0

    def autocast(self):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def prepare_optimizer(self, opt):
        return opt

    def gather(self, x):
        out = [torch.empty_like(x) for _ in range(2)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)


def _worker(rank, store_path, first_stage_path, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    from test_tasks import TINY, tiny_cfg  # same tiny networks as the single-process tests

    from ldm_dis.training.ldm_task import LDMTask

    cfg = tiny_cfg(out_path)
    torch.manual_seed(0)  # same initial weights on both processes
    task = LDMTask(cfg, None, first_stage_path=first_stage_path)
    acc = _TwoProcessAccelerator(rank)
    task.prepare(acc)
    torch.manual_seed(100 + rank)  # different data, noise and timesteps per process
    for step in range(2):
        images = torch.rand(4, 3, TINY["data"]["resolution"], TINY["data"]["resolution"]) * 2 - 1
        task.training_step(images, None, step, acc)
    state = {k: v for k, v in task.feature_extractor.state_dict().items()}
    state.update({f"unet.{k}": v for k, v in task.unet.state_dict().items()})
    torch.save(state, f"{out_path}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_stay_identical(tmp_path):
    from safetensors.torch import save_file
    from test_tasks import tiny_cfg

    from ldm_dis.models.vqgan import FirstStage

    torch.manual_seed(0)
    fs = FirstStage.from_config(tiny_cfg(tmp_path).model.first_stage)
    save_file({k: v.contiguous() for k, v in fs.state_dict().items()}, str(tmp_path / "fs.safetensors"))
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path / "fs.safetensors"), str(tmp_path)), nprocs=2)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert a["cnn.1.running_mean"].abs().sum() > 0  # BatchNorm statistics moved, and agree


def _vqgan_worker(rank, store_path, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    from test_tasks import TINY, tiny_cfg

    from ldm_dis.training.vqgan_task import VQGANTask

    cfg = tiny_cfg(out_path, kind="vqgan")
    cfg.model.first_stage.codebook_init = "data"
    torch.manual_seed(0)  # same initial weights on both processes
    task = VQGANTask(cfg)
    acc = _TwoProcessAccelerator(rank)
    task.prepare(acc)
    torch.manual_seed(100 + rank)  # different first batches: each process would pick other codes
    for step in range(2):
        images = torch.rand(4, 3, TINY["data"]["resolution"], TINY["data"]["resolution"]) * 2 - 1
        task.training_step(images, None, step, acc)
    torch.save(task.first_stage.state_dict(), f"{out_path}/vq_rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_data_initialised_codebook_is_the_main_process_one_everywhere(tmp_path):
    mp.spawn(_vqgan_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    a, b = torch.load(tmp_path / "vq_rank0.pt"), torch.load(tmp_path / "vq_rank1.pt")
    assert a["vq.quantize.embedding.weight"].abs().max() > 1.0 / len(a["vq.quantize.embedding.weight"])
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


DYGA = {"k_init": 2, "k_max": 3, "em_iters": 5, "max_split_rounds": 1, "min_count": 2.0, "num_workers": 1,
        "max_samples": 24}


def _dyga_worker(rank, port, first_stage_path, out_path):
    """A real two-process Accelerator (gloo) and Trainer; one DyGA fit at the end of epoch 0."""
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), ACCELERATE_USE_CPU="1")
    torch.set_num_threads(1)
    from accelerate import Accelerator
    from omegaconf import OmegaConf
    from test_tasks import TINY, tiny_cfg

    from ldm_dis.data import build_dataset
    from ldm_dis.training.ldm_task import LDMTask
    from ldm_dis.training.trainer import Trainer

    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2 and acc.process_index == rank
    cfg = tiny_cfg(out_path, bottleneck={"kind": "dyga", "dyga": DYGA})
    dataset = build_dataset(OmegaConf.create(TINY["data"]))
    torch.manual_seed(0)  # same initial weights on both processes
    task = LDMTask(cfg, dataset, first_stage_path=first_stage_path)
    trainer = Trainer(cfg, task, dataset, acc)
    fits, collected = [], []
    fit, collect = task.bottleneck.fit, task.collect_features
    task.bottleneck.fit = lambda features: fits.append(rank) or fit(features)
    task.collect_features = lambda *args: collected.append(collect(*args)) or collected[-1]
    task.on_epoch_end(0, trainer)
    torch.save({"anchors": task.bottleneck.state_dict(), "features": torch.from_numpy(collected[0]), "fits": len(fits),
                "extractor": task.feature_extractor.state_dict()}, f"{out_path}/dyga_rank{rank}.pt")
    acc.wait_for_everyone()


@pytest.mark.slow
def test_dyga_anchors_fitted_once_on_gathered_features_and_broadcast(tmp_path):
    import socket

    import numpy as np
    from omegaconf import OmegaConf
    from safetensors.torch import save_file
    from test_tasks import TINY, tiny_cfg

    from ldm_dis.bottlenecks.dyga import DyGABottleneck
    from ldm_dis.data import build_dataset
    from ldm_dis.models.feature_extractor import FeatureExtractor
    from ldm_dis.models.vqgan import FirstStage

    torch.manual_seed(0)
    cfg = tiny_cfg(tmp_path, bottleneck={"kind": "dyga", "dyga": DYGA})
    fs = FirstStage.from_config(cfg.model.first_stage)
    save_file({k: v.contiguous() for k, v in fs.state_dict().items()}, str(tmp_path / "fs.safetensors"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_dyga_worker, args=(port, str(tmp_path / "fs.safetensors"), str(tmp_path)), nprocs=2)
    a, b = torch.load(tmp_path / "dyga_rank0.pt"), torch.load(tmp_path / "dyga_rank1.pt")
    assert (a["fits"], b["fits"]) == (1, 0)  # fitted once, on the main process
    # both processes gathered the features of the whole training set, in dataset order
    dataset = build_dataset(OmegaConf.create(TINY["data"]))
    fx = FeatureExtractor.from_config(cfg.model.encoder, image_size=16)
    fx.load_state_dict(a["extractor"])
    with torch.no_grad():
        expect = fx.eval()(torch.stack([dataset[i][0] for i in range(len(dataset))])).numpy()
    features = a["features"].numpy()
    np.testing.assert_array_equal(features, b["features"].numpy())
    np.testing.assert_allclose(features, expect, rtol=1e-5, atol=1e-6)
    # identical anchors everywhere, equal to a one-process fit on the same features
    one = DyGABottleneck.from_config(cfg.model.bottleneck.dyga, 3, 8)
    one.fit(features)
    assert int(a["anchors"]["num_fits"]) == 1
    for key, value in one.state_dict().items():
        torch.testing.assert_close(a["anchors"][key], value, rtol=0, atol=0, msg=key)
        torch.testing.assert_close(b["anchors"][key], value, rtol=0, atol=0, msg=key)
