"""Loss curves from the run log: the same as ``ldm-dis plot curves``, for those who work from scripts.

    python scripts/loss_curves.py runs/quickstart [--out loss_curves.png] [options; --help lists them]
"""

import sys

from ldm_dis.cli import main

if __name__ == "__main__":
    sys.exit(main(["plot", "curves", *sys.argv[1:]]))
