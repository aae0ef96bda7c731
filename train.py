"""Train a model: ``accelerate launch train.py --config mpi3d.yaml [a.b=value ...] [--resume] [--export-codes]``.

The same entry as ``ldm-dis train`` (see ldm_dis/commands/train.py).
"""

import sys

from ldm_dis.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
