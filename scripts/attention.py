"""Cross-attention heat maps per latent unit (paper Fig. 4): the same as ``ldm-dis attention``, for those who work from scripts.

    python scripts/attention.py runs/quickstart [--out attention.png] [options; --help lists them]
"""

import sys

from ldm_dis.cli import main

if __name__ == "__main__":
    sys.exit(main(["attention", *sys.argv[1:]]))
