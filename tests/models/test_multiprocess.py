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
