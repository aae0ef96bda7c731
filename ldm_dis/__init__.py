"""ldm_dis: disentangled representation learning with latent diffusion models."""

__version__ = "0.1.0"
