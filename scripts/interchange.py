"""Latent interchange grid (paper Fig. 3): the same as ``ldm-dis sample interchange``, for those who work from scripts.

    python scripts/interchange.py runs/quickstart [--out interchange.png] [options; --help lists them]
"""

import sys

from ldm_dis.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample", "interchange", *sys.argv[1:]]))
