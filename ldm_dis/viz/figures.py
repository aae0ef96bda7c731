"""Writing a matplotlib figure: one place for the folder, the file and freeing the figure's memory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def save_figure(fig, path, dpi: Optional[float] = None) -> Path:
    """Save ``fig`` as ``path`` (parent folders created), close it, return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **({"dpi": dpi} if dpi else {}))
    plt.close(fig)
    return path
