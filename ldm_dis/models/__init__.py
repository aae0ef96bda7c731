"""Networks of the latent diffusion model: the VQ-GAN first stage, the feature extractor, the U-Net
with cross-attention and Skip Dropout, the EMA copy and the diffusion loss. Plain ``nn.Module``s;
composition happens in :mod:`ldm_dis.training.ldm_task` and :mod:`ldm_dis.training.vqgan_task`."""
