"""``ldm-dis evaluate``: score a trained run, or exported codes, with disentanglement metrics.

    ldm-dis evaluate --checkpoint runs/shapes3d --metrics factorvae dci mig infomec
    ldm-dis evaluate --codes runs/shapes3d/codes.npz --fast --out eval/
    ldm-dis evaluate --codes codes.npz --metrics dci --set dci.num_train=2000 --jobs 2
    ldm-dis evaluate --checkpoint runs/celeba --metrics fid --inception-weights inception-2015-12-05.pt

Writes ``metrics.json`` (scores, matrices, the preset and seed, skipped metrics with the reason) and
``nmi.png`` / ``dci_importance.png`` heatmaps with the factor names. ``--fast`` uses smaller samples
(see ``ldm_dis.metrics.FAST_PROTOCOL``) for quick looks; the output says which preset was used.

With ``--codes FILE.npz`` (keys ``codes`` (n, d) or (n, N, D), ``factors`` (n, F) int, optional
``factor_names``) every metric draws factor values as it would from the dataset and reads the codes of
the rows that have them. A full row-major export (``ldm-dis export``) holds every combination, so
the protocols are unchanged, FactorVAE's fixed-factor batches included. A partial export (any subset
of rows) is sampled by rows: points are drawn among the rows, and a FactorVAE batch among the rows
sharing the fixed factor's value. Without ``data.subset``, a run (``--checkpoint``) and its export
(``--codes``) give the same numbers for the same seed.

Vector units are reduced per unit by PCA, fitted on each metric's evaluation sample (``--unit-pca sample``,
the paper's protocol) or once on the codes of the whole dataset (``all``, the released code's: a
checkpoint's dataset is then encoded in full first). InfoMEC counts a code as active by its range
(paper: range > largest / 20) or, as the released code, by its interquartile range (IQR > largest / 10).
Both default to the run's config (``eval.unit_pca``, ``eval.infomec_active``, set by ``protocol``) or to
what the codes file records; ``--protocol paper|released`` sets both, ``--unit-pca`` and
``--set infomec.active_rule=iqr`` each one.

FID (``--metrics fid``, a checkpoint of an LDM run, ``--inception-weights`` a local TorchScript file)
compares dataset images with as many DDIM samples of the EMA U-Net, each conditioned on the units of
another dataset image (``model.diffusion.sample_steps`` steps). Codes have no images: FID is skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ldm_dis.config.protocol import EVAL_CHOICES

DEFAULT_METRICS = ["factorvae", "dci", "mig", "sap", "modularity", "infomec"]


def add_parser(subparsers, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="run folder or checkpoint file of a trained model")
    source.add_argument("--codes", help=".npz with codes, factors and optional factor_names")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS,
                        help=f"metric names (default: {' '.join(DEFAULT_METRICS)})")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same numbers")
    parser.add_argument("--fast", action="store_true", help="smaller samples for a quick look")
    parser.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="METRIC.KEY=VALUE",
                        help="override one protocol value, e.g. dci.num_train=2000 (repeatable)")
    parser.add_argument("--data", metavar="PATH",
                        help="the dataset file, when the run's data.path is elsewhere on this machine (synth-* data needs none)")
    parser.add_argument("--inception-weights", help="local TorchScript Inception file for FID")
    parser.add_argument("--protocol", choices=list(EVAL_CHOICES),
                        help="unit PCA and InfoMEC's active codes of the paper's text or of the released code "
                             "(default: the run's config, or what the codes file records)")
    parser.add_argument("--unit-pca", choices=["sample", "all"],
                        help="fit the per-unit PCA on each metric's sample or once on the whole dataset")
    parser.add_argument("--out", help="output folder (default: <run>/eval or next to the codes file)")
    parser.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """["dci.num_train=2000"] -> {"dci": {"num_train": 2000}}; values are parsed as JSON when they can be."""
    from ldm_dis.errors import UserInputError

    protocol: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, dot, param = key.partition(".")
        if not (sep and dot and metric and param):
            raise UserInputError(f"--set expects METRIC.KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        protocol.setdefault(metric, {})[param] = parsed
    return protocol


def load_source(args):
    """(dataset or CodeTable, representation_fn or None, generate_fn or None, the source's evaluation
    choices, default output folder)."""
    from ldm_dis.errors import UserInputError
    from ldm_dis.metrics import CodeTable

    if args.codes:
        table = CodeTable.from_npz(args.codes)
        return table, None, None, table.protocol, Path(args.codes).with_suffix("").parent / "eval"
    from ldm_dis.training.export import eval_protocol, load_evaluation_source

    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise UserInputError(f"checkpoint {str(checkpoint)!r} does not exist")
    from ldm_dis.runs import run_dir_of

    source = load_evaluation_source(checkpoint, data_path=args.data)
    run_dir = run_dir_of(checkpoint)
    return source.dataset, source.representation_fn, source.generate_fn, eval_protocol(source.cfg), run_dir / "eval"


def evaluation_choices(recorded: dict, args) -> dict:
    """The paper's, then the source's, then --protocol's, then --unit-pca."""
    choices = {**EVAL_CHOICES["paper"], **recorded}
    if args.protocol:
        choices.update(EVAL_CHOICES[args.protocol])
    if args.unit_pca:
        choices["unit_pca"] = args.unit_pca
    return choices


def run(args) -> int:
    from ldm_dis.metrics import FAST_PROTOCOL, evaluate
    from ldm_dis.metrics.suite import check_names
    from ldm_dis.viz.heatmaps import draw_heatmap

    names = check_names(args.metrics)
    protocol = parse_overrides(args.overrides)
    if args.inception_weights:
        protocol.setdefault("fid", {})["weights"] = args.inception_weights
    dataset, representation_fn, generate_fn, recorded, default_out = load_source(args)
    choices = evaluation_choices(recorded, args)
    out_dir = Path(args.out) if args.out else default_out
    out_dir.mkdir(parents=True, exist_ok=True)

    active_rule = protocol.get("infomec", {}).get("active_rule", choices["infomec_active"])
    kwargs = {name: dict(values) for name, values in protocol.items()}  # + what must not go to the json
    if "infomec" in names:
        kwargs.setdefault("infomec", {})["active_rule"] = active_rule
    if "fid" in names and generate_fn is not None:
        kwargs.setdefault("fid", {})["generate_fn"] = generate_fn
    preset = "fast" if args.fast else "standard"
    sizes = "; ".join(f"{n}: {FAST_PROTOCOL[n]}" for n in names) if args.fast else "published protocol sizes"
    print(f"preset: {preset} ({sizes}); unit PCA: {choices['unit_pca']}; InfoMEC active codes: {active_rule}"
          + (f"; overridden by --set: {protocol}" if protocol else ""))
    result = evaluate(dataset, representation_fn, names, seed=args.seed, fast=args.fast,
                      n_jobs=args.jobs, protocol=kwargs, unit_pca=choices["unit_pca"])
    result["source"] = {"checkpoint": args.checkpoint, "codes": args.codes}
    result["factor_names"] = list(dataset.factor_names)
    result["protocol_overrides"] = protocol
    result["infomec_active"] = active_rule
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))

    names_f = list(dataset.factor_names)
    if "nmi" in result["matrices"].get("infomec", {}):
        draw_heatmap(result["matrices"]["infomec"]["nmi"], names_f, out_dir / "nmi.png",
                     "InfoMEC NMI  I(factor; code) / H(factor)", vmax=1.0)
    if "importance_matrix" in result["matrices"].get("dci", {}):
        import numpy as np

        importance = np.asarray(result["matrices"]["dci"]["importance_matrix"]).T  # (F, d)
        draw_heatmap(importance, names_f, out_dir / "dci_importance.png", "DCI importance (GBT)")

    for name, scores in result["scores"].items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        print(f"{name:>11}: {shown}  ({result['seconds'][name]:.1f} s)")
    for name, reason in result["skipped"].items():
        print(f"{name:>11}: {reason}")
    print(f"wrote {out_dir / 'metrics.json'} (preset: {preset})")
    return 0
