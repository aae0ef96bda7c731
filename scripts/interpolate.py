"""Latent interpolation strips (paper Fig. 6): the same as ``ldm-dis sample interpolate``, for those who work from scripts.

    python scripts/interpolate.py runs/quickstart [--out interpolate.png] [options; --help lists them]
"""

import sys

from ldm_dis.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample", "interpolate", *sys.argv[1:]]))
