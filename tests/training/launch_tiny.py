"""``train.py`` for the tiny task, run as a subprocess by the tests (plain python or ``accelerate launch``).

Beyond training it prints, per process, a digest of the final weights, and records any file-system write
a process other than the main one makes under run.dir (via an audit hook, which also sees writes made
from C): only the main process may write.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from tiny_training_task import register, weights_digest  # noqa: E402

from ldm_dis.commands import train  # noqa: E402
from ldm_dis.training.trainer import Trainer  # noqa: E402

WRITE_EVENTS = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"}
rank = int(os.environ.get("RANK", "0"))
watched = os.path.abspath(os.environ["TINY_WATCH_DIR"]) if "TINY_WATCH_DIR" in os.environ else None
writes = []


def audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        paths = [args[0]] if writing else []
    elif event in WRITE_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for path in paths:
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(watched):
            writes.append((event, path))


if watched and rank != 0:
    sys.addaudithook(audit)

fit = Trainer.fit


def fit_and_report(self):
    fit(self)
    print(f"\nWEIGHTS rank={rank} step={self.step} sha={weights_digest(self)}", flush=True)


Trainer.fit = fit_and_report
if "TINY_THREADS" in os.environ:  # float results depend on the thread count; match the comparing process
    import torch

    torch.set_num_threads(int(os.environ["TINY_THREADS"]))
register()
code = train.main(sys.argv[1:])  # data.name=tiny
if watched and rank != 0:
    print(f"WRITES rank={rank} {writes}", flush=True)
sys.exit(code)
