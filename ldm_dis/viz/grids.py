"""Image grids with row and column labels, written as PNG (PIL only; no torchvision, no matplotlib).

    save_image_grid(images, "grid.png", nrow=8, row_labels=["samples", "scale"], title="synth-shapes3d",
                    caption="what the labels mean, wrapped to the grid's width under it")

Images are ``(n, C, H, W)`` in [-1, 1] with C = 1 or 3, laid out row by row, ``nrow`` per row (as in
torchvision's ``make_grid``); an all-NaN image leaves its cell blank. Small images are enlarged by pixel repetition so that a 32x32 dataset is
still readable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

_PAD = 2  # pixels between cells
_MIN_CELL = 64  # cells are enlarged to at least this many pixels


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def to_uint8(images) -> np.ndarray:
    """``(n, C, H, W)`` in [-1, 1] (numpy or torch, C = 1 or 3) -> uint8 ``(n, H, W, 3)``."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (n, C, H, W) with C in (1, 3); got shape {x.shape}")
    x = np.nan_to_num(x, nan=1.0)  # NaN marks an empty cell: drawn in the white of the canvas
    x = np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.repeat(x, 3, axis=3) if x.shape[3] == 1 else x


def image_grid(
    images,
    nrow: int,
    row_labels: Optional[Sequence[str]] = None,
    col_labels: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    caption: Optional[str] = None,
) -> Image.Image:
    """The grid as a PIL image (see :func:`save_image_grid`)."""
    x = to_uint8(images)
    n, h, w, _ = x.shape
    ncol = max(1, int(nrow))
    nrows = max(1, math.ceil(n / ncol))
    zoom = max(1, math.ceil(_MIN_CELL / max(h, w)))
    x = x.repeat(zoom, axis=1).repeat(zoom, axis=2)
    ch, cw = h * zoom, w * zoom
    font = _font(max(11, min(16, ch // 5)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = lambda s: probe.textbbox((0, 0), s, font=font)[2]  # noqa: E731
    line_h = probe.textbbox((0, 0), "Ag", font=font)[3] + 4
    left = (max(text_w(str(s)) for s in row_labels) + 10) if row_labels else 0
    top = (line_h + 4 if title else 0) + (line_h if col_labels else 0)

    width = left + ncol * (cw + _PAD) + _PAD
    small = _font(11)
    notes = _wrap(str(caption), width - 8, lambda t: probe.textbbox((0, 0), t, font=small)[2]) if caption else []
    note_h = probe.textbbox((0, 0), "Ag", font=small)[3] + 3
    bottom = top + nrows * (ch + _PAD) + _PAD
    canvas = Image.new("RGB", (width, bottom + (len(notes) * note_h + 6 if notes else 0)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(notes):
        draw.text((4, bottom + 3 + k * note_h), line, fill="black", font=small)
    if title:
        draw.text((left + _PAD, 2), str(title), fill="black", font=font)
    for j, label in enumerate(col_labels or []):
        draw.text((left + _PAD + j * (cw + _PAD), top - line_h), str(label), fill="black", font=font)
    for i, label in enumerate(row_labels or []):
        draw.text((4, top + _PAD + i * (ch + _PAD) + ch // 2 - line_h // 2), str(label), fill="black", font=font)
    for k in range(n):
        r, c = divmod(k, ncol)
        canvas.paste(Image.fromarray(x[k]), (left + _PAD + c * (cw + _PAD), top + _PAD + r * (ch + _PAD)))
    return canvas


def save_image_grid(
    images,
    path: str | Path,
    nrow: int,
    row_labels: Optional[Sequence[str]] = None,
    col_labels: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    caption: Optional[str] = None,
) -> Path:
    """Write ``images`` ``(n, C, H, W)`` in [-1, 1] as a PNG grid with ``nrow`` images per row; returns the path.
    ``caption`` is drawn under the grid, wrapped to its width."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, nrow, row_labels, col_labels, title, caption).save(path)
    return path


def _wrap(text: str, width: int, measure) -> list[str]:
    """Greedy word wrap of ``text`` to lines whose ``measure(line)`` (pixels) fits ``width``."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and measure(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


def interleave_rows(originals: torch.Tensor, outputs: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """Picture layout: a row of up to ``per_row`` originals, then the row of their outputs, and so on."""
    rows = []
    for i in range(0, len(originals), per_row):
        rows += [originals[i : i + per_row], outputs[i : i + per_row]]
    return torch.cat(rows)
