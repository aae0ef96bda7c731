"""Dynamic Gaussian Anchoring (paper Sec. 3.2, Algorithms 1-3).

hddc.py: the HDDC Gaussian-mixture estimator (scikit-learn style, numpy only);
anchor_selection.py: K0 Gaussians, split by density or at random, filter, refit (one unit);
batched_hddc.py, batched_fit.py: the same EM and anchor selection in torch, every unit at once on the
training device (the bottleneck's default fitter);
alignment.py: pull features toward a Gumbel-chosen anchor (torch);
bottleneck.py: the module the LDM uses: per-unit mixtures in buffers, fit schedule, inspectable fits.
"""

from ldm_dis.bottlenecks.dyga.anchor_selection import feature_normalization, select_anchors
from ldm_dis.bottlenecks.dyga.bottleneck import DyGABottleneck
from ldm_dis.bottlenecks.dyga.hddc import HDDC

__all__ = ["DyGABottleneck", "HDDC", "feature_normalization", "select_anchors"]
