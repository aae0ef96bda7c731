"""Loss curves of a run from its ``run.dir/log.jsonl`` (:mod:`ldm_dis.training.run_log`; paper Fig. 7).

Every numeric key the trainer logged (loss terms, learning rate, DyGA anchor counts, ...) against ``step``,
one panel per key; per-unit keys (``dyga/K_unit00``, ``dyga/K_unit01``, ...) share the panel ``dyga/K``.
Series with few points (values logged once per epoch) are drawn with markers so a single point shows.
The end-of-training record (``"end"``: steps run, seconds, overall images/s) is a summary, not drawn.
A value that never changed (a constant learning rate) gets no panel: it is written under the title, and
so is a series that repeats another one exactly (``loss`` equals ``diffusion`` when that is the only term).

    save_loss_curves("curves.png", read_log("runs/quickstart"))
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ldm_dis.viz.figures import save_figure

_NOT_CURVES = {"step", "time", "epoch", "epoch_end"}  # bookkeeping fields of a record, not measurements
_UNIT_SUFFIX = re.compile(r"_unit\d+$")
_LAST = ("lr", "images_per_s")  # training conditions, drawn after the loss terms


def _unit_name(key: str) -> str:
    """"dyga/K_unit03" -> "u3", the name every picture gives unit 3."""
    return f"u{int(_UNIT_SUFFIX.search(key).group(0)[5:])}"


def curves_from_records(records: Sequence[dict]) -> Dict[str, List[Tuple[str, np.ndarray, np.ndarray]]]:
    """Records (dicts with ``step``) -> {panel: [(key, steps (m,), values (m,))]}, numeric values only;
    None (a non-finite value in the log) is left out."""
    series: Dict[str, Tuple[list, list]] = defaultdict(lambda: ([], []))
    for record in records:
        if "end" in record:  # the end-of-training summary (steps run, seconds, images/s overall): not a curve
            continue
        step = record.get("step")
        for key, value in record.items():
            if key in _NOT_CURVES or key.endswith("_index") or step is None:  # counters are not curves
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            series[key][0].append(step)
            series[key][1].append(float(value))
    panels: Dict[str, list] = defaultdict(list)
    for key in sorted(series, key=lambda k: (k != "loss", k.split("/")[0] in _LAST, k)):
        steps, values = series[key]
        panels[_UNIT_SUFFIX.sub("", key)].append((key, np.asarray(steps), np.asarray(values)))
    return dict(panels)


def fold_constants_and_copies(panels: Dict[str, list]) -> Tuple[Dict[str, list], List[str]]:
    """Panels -> (the panels worth drawing, notes): a panel whose values are all one number (over at least
    two points) becomes the note "name = value"; a one-line panel equal to an earlier one is named in it."""
    kept: Dict[str, list] = {}
    notes: List[str] = []
    for name, lines in panels.items():
        values = np.concatenate([v for *_, v in lines])
        if len(values) > 1 and np.all(values == values[0]):
            notes.append(f"{name} = {values[0]:.4g}")
            continue
        twin = next((other for other, drawn in kept.items() if len(lines) == len(drawn) == 1
                     and np.array_equal(lines[0][1], drawn[0][1]) and np.array_equal(lines[0][2], drawn[0][2])), None)
        if twin is not None:
            kept[f"{twin} = {name}"] = kept.pop(twin)
            continue
        kept[name] = lines
    return kept, notes


def save_loss_curves(path: str | Path, records: Sequence[dict], title: Optional[str] = None) -> Path:
    """Write the curves of ``records`` (from :func:`ldm_dis.training.run_log.read_log`); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels, notes = fold_constants_and_copies(curves_from_records(records))
    if not panels and not notes:
        raise ValueError("the run log holds no numeric values to plot")
    if not panels:  # nothing changed: still draw the one constant, so there is a figure
        panels = dict(list(curves_from_records(records).items())[:1])
    last_step = max(steps.max() for lines in panels.values() for _, steps, _ in lines)
    cols = min(3, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    header = [title] if title else []
    if notes:
        header.append("constant: " + ", ".join(notes))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows + 0.25 * len(header)), squeeze=False,
                             layout="constrained")
    for ax, (name, lines) in zip(axes.flat, panels.items()):
        for key, steps, values in lines:
            ax.plot(steps, values, lw=1, marker="o" if len(steps) <= 20 else None, ms=3,
                    label=_unit_name(key) if len(lines) > 1 else None)
        positive = all((v > 0).all() for *_, v in lines)
        spread = max(v.max() for *_, v in lines) / max(min(v.min() for *_, v in lines), 1e-12) if positive else 0
        if positive and spread > 20:  # losses falling over decades read better on a log axis
            ax.set_yscale("log")
        ax.set_xlim(0, last_step * 1.02)  # one step axis for all panels, per-epoch values included
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=5, ncol=2)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if header:
        import textwrap

        fig.suptitle("\n".join(textwrap.fill(line, 60 * cols) for line in header), fontsize=8)
    return save_figure(fig, path, dpi=110)
