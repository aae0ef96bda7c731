"""VAE-family baselines: AE, beta-VAE, beta-TCVAE, FactorVAE, BioAE, QLAE, dVAE, QVAE, FactorQVAE and
FactordVAE on one shared encoder/decoder, trained by the same trainer (``model.kind=NAME``).

- ``networks``: the shared convolutional encoder / decoder;
- ``latents``: the latent layer of each kind (the only part that differs);
- ``losses``: reconstruction likelihoods, Gaussian KL, beta-TCVAE's MWS decomposition, BioAE penalties;
- ``model``: encoder -> latent -> decoder and the kind table;
- ``task``: the training step (optimizers, discriminator alternation) for the trainer.
The global scalar codebook and the TC discriminator are shared with the diffusion model's FactorQ
bottleneck (``ldm_dis.bottlenecks.scalar_codebook``, ``ldm_dis.bottlenecks.total_correlation``).
"""
