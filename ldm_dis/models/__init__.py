"""Networks of the latent diffusion model: the VQ-GAN first stage, the feature extractor, the U-Net
with cross-attention and Skip Dropout, the EMA copy and the diffusion loss. Plain ``nn.Module``s;
composed in :class:`ldm_dis.models.ldm.LatentDiffusion` (trained by :mod:`ldm_dis.training.ldm_task`);
``load_pretrained(path)`` opens any saved model, run folder or checkpoint by its kind."""


def load_pretrained(path, **kwargs):
    """Any saved model, run folder or checkpoint of ours, by its kind (see :mod:`ldm_dis.models.pretrained`)."""
    from ldm_dis.models.pretrained import load_pretrained as load

    return load(path, **kwargs)
