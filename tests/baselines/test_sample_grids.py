"""Traversal and swap grids of ``ldm-dis sample`` on an untrained tiny baseline (no checkpoint needed)."""

import torch
from omegaconf import OmegaConf

from ldm_dis.baselines.model import BaselineModel
from ldm_dis.baselines.pictures import swap_grid, traversal_grid, traversal_values
from ldm_dis.config.schema import BaselineConfig


def tiny(kind):
    cfg = OmegaConf.structured(BaselineConfig)
    cfg.base_channels, cfg.hidden, cfg.codebook_size = 4, 16, 8
    torch.manual_seed(0)
    return BaselineModel(kind, cfg, 3, 8, latent_dim=3).eval()


class RecordingDecoder(torch.nn.Module):
    """Returns its input codes broadcast as 'images' so the grid's codes can be read back."""

    def forward(self, z):
        return z[:, :, None, None].expand(-1, -1, 8, 8)


def test_traversal_changes_one_dimension_per_row():
    model = tiny("ae")
    model.decoder = RecordingDecoder()
    model.likelihood = "gaussian"
    images, reference = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(40, 3, 8, 8) * 2 - 1
    grid = traversal_grid(model, images, reference, steps=4)
    assert grid.shape == (2 * 3 * 4, 3, 8, 8)
    codes = model.encode(images).clamp(0, 1) * 2 - 1  # what the recording decoder turns a code into
    z = grid[:, :, 0, 0].reshape(2, 3, 4, 3)
    for i in range(2):
        for j in range(3):
            others = [k for k in range(3) if k != j]
            assert torch.allclose(z[i, j][:, others], codes[i, others].expand(4, -1))


def test_traversal_values_snap_to_the_codebook():
    model = tiny("factorqvae")
    codes = model.encode(torch.rand(30, 3, 8, 8) * 2 - 1)
    values = traversal_values(model, codes, steps=5)
    assert values.shape == (3, 5)
    assert torch.isin(values, model.latent.codebook.values).all()
    qlae = tiny("qlae")
    v = traversal_values(qlae, torch.tensor([[-0.5, 0.0, 0.5], [0.5, 0.1, -0.5]]), steps=3)
    assert torch.isin(v[1], qlae.latent.codebooks[1]).all()


def test_swap_rows_take_one_dimension_from_the_second_image():
    model = tiny("betavae")
    model.decoder = RecordingDecoder()
    a, b = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    grid = swap_grid(model, a, b).reshape(2, 5, 3, 8, 8)
    assert torch.equal(grid[:, 0], a) and torch.equal(grid[:, 1], b)
    za, zb = model.encode(a), model.encode(b)
    for j in range(3):
        expected = za.clone()
        expected[:, j] = zb[:, j]
        assert torch.allclose(grid[:, 2 + j, :, 0, 0], expected.clamp(0, 1) * 2 - 1)
