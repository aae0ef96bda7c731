"""ldm_dis: disentangled representation learning with latent diffusion models."""

import os

# On CPU, torch's OpenMP threads share the cores with DataLoader workers, DyGA's fitting processes and
# anything else running. OpenMP's default busy-waiting then makes the threads stall each other: one
# quickstart LDM step (batch 64) took 14 s instead of 0.9 s while another process held one of two
# cores. Passive waiting avoids that collapse. It must be set before torch loads its OpenMP runtime;
# an OMP_WAIT_POLICY already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
