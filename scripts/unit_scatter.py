"""Unit scatter coloured by the best-matching factor (paper Fig. 1, 11): the same as ``ldm-dis plot scatter``, for those who work from scripts.

    python scripts/unit_scatter.py runs/quickstart [--out unit_scatter.png] [options; --help lists them]
"""

import sys

from ldm_dis.cli import main

if __name__ == "__main__":
    sys.exit(main(["plot", "scatter", *sys.argv[1:]]))
