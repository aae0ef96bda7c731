"""``ldm-dis evaluate``: score a trained run, or exported codes, with disentanglement metrics."""

from __future__ import annotations

import json
from pathlib import Path

from ldm_dis.config.protocol import EVAL_CHOICES

DEFAULT_METRICS = ["factorvae", "dci", "mig", "sap", "modularity", "infomec"]

DESCRIPTION = """Score a trained run, or exported codes, with disentanglement metrics.

    ldm-dis evaluate runs/shapes3d --metrics factorvae dci mig infomec
    ldm-dis evaluate --codes runs/shapes3d/codes.npz --fast --out eval/
    ldm-dis evaluate --codes codes.npz --metrics dci --set dci.num_train=2000 --jobs 2

Writes metrics.json (scores, matrices, the preset and seed, skipped metrics with the reason) and the
heatmaps nmi.png (InfoMEC's normalized mutual information) and dci_importance.png, with the factor
names; prints the scores as a table. --fast uses smaller samples for a quick look (the sizes are
printed); without it, the published protocol sizes are used.

Metric names: factorvae, dci, mig, sap, modularity, infomec, tad (CelebA attributes), downstream
(sample efficiency), fid (needs --inception-weights).

--codes FILE.npz reads codes (n, d) or (n, N, D), factors (n, F) integers and optional factor_names,
as written by ldm-dis export. A full export holds every factor combination, so the protocols are
unchanged; a partial one (ldm-dis export --num N) is sampled among its rows, and FactorVAE's batches
among the rows that share the fixed factor's value. Vector units are reduced to one number each by a
per-unit PCA fitted on each metric's sample (--unit-pca sample, the paper's protocol) or once on the codes
of the whole dataset (all, the released code's). InfoMEC counts a code as active by its range (paper:
range > largest / 20) or, as the released code, by its interquartile range (IQR > largest / 10). Both
default to the run's config (eval.unit_pca, eval.infomec_active, set by protocol) or to what the codes
file records; --protocol paper|released sets both, --unit-pca and --set infomec.active_rule=iqr each one.

FID (--metrics fid, an LDM run, --inception-weights a local TorchScript file) compares dataset images
with as many DDIM samples of the EMA U-Net, each conditioned on the units of another dataset image
(model.diffusion.sample_steps steps). Codes have no images: FID is skipped.

A run folder copied to another path or machine is scored from its own files; if its data file is
elsewhere, give it with --data PATH (synth-* data needs none).
"""


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser, add_run_argument

    parser = add_command_parser(subparsers, name, help_text, DESCRIPTION)
    add_run_argument(parser, required=False, help_text="the trained run to score (or give --codes instead)")
    parser.add_argument("--codes", metavar="NPZ", help="score these exported codes instead of a run")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS, metavar="NAME", help="metrics to compute")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same numbers")
    parser.add_argument("--fast", action="store_true", help="smaller samples for a quick look")
    parser.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="METRIC.KEY=VALUE",
                        help="override one protocol value, e.g. dci.num_train=2000 (repeatable)")
    parser.add_argument("--data", metavar="PATH",
                        help="the dataset file, when the run's data.path is elsewhere on this machine (synth-* data needs none)")
    parser.add_argument("--inception-weights", metavar="FILE", help="local TorchScript Inception file for FID")
    parser.add_argument("--protocol", choices=list(EVAL_CHOICES),
                        help="unit PCA and InfoMEC's active codes of the paper's text or of the released code "
                             "(default: the run's config, or what the codes file records)")
    parser.add_argument("--unit-pca", choices=["sample", "all"],
                        help="fit the per-unit PCA on each metric's sample or once on the whole dataset")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: RUN/eval, or eval/ next to the codes file)")
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

    if (args.codes is None) == (args.run is None):
        raise UserInputError("name what to score: a RUN folder, or --codes FILE.npz (one of the two)")
    if args.codes:
        table = CodeTable.from_npz(args.codes)
        return table, None, None, table.protocol, Path(args.codes).with_suffix("").parent / "eval"
    try:
        from ldm_dis.training.export import eval_protocol, load_evaluation_source
    except ImportError as exc:
        raise UserInputError(
            f"scoring a run needs ldm_dis.training.export.load_evaluation_source, which cannot be imported "
            f"({exc}); export codes with another install and use --codes instead"
        ) from exc
    checkpoint = Path(args.run)
    if not checkpoint.exists():
        raise UserInputError(f"run {str(checkpoint)!r} does not exist")
    source = load_evaluation_source(checkpoint, data_path=args.data)
    return source.dataset, source.representation_fn, source.generate_fn, eval_protocol(source.cfg), \
        (source.run_dir or checkpoint) / "eval"


def evaluation_choices(recorded: dict, args) -> dict:
    """The paper's, then the source's, then --protocol's, then --unit-pca."""
    choices = {**EVAL_CHOICES["paper"], **recorded}
    if args.protocol:
        choices.update(EVAL_CHOICES[args.protocol])
    if args.unit_pca:
        choices["unit_pca"] = args.unit_pca
    return choices


def run(args) -> int:
    from ldm_dis.metrics import evaluate
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
    print(protocol_table(names, preset, protocol), flush=True)
    print(f"unit PCA: {choices['unit_pca']}; InfoMEC active codes: {active_rule}", flush=True)
    result = evaluate(dataset, representation_fn, names, seed=args.seed, fast=args.fast,
                      n_jobs=args.jobs, protocol=kwargs, unit_pca=choices["unit_pca"])
    result["source"] = {"run": args.run, "codes": args.codes}
    result["factor_names"] = list(dataset.factor_names)
    result["protocol_overrides"] = protocol
    result["infomec_active"] = active_rule
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))

    names_f = list(dataset.factor_names)
    if "nmi" in result["matrices"].get("infomec", {}):
        draw_heatmap(result["matrices"]["infomec"]["nmi"], names_f, out_dir / "nmi.png",
                     "InfoMEC NMI  I(factor; unit) / H(factor)", vmax=1.0)
    if "importance_matrix" in result["matrices"].get("dci", {}):
        import numpy as np

        importance = np.asarray(result["matrices"]["dci"]["importance_matrix"]).T  # (F, d)
        draw_heatmap(importance, names_f, out_dir / "dci_importance.png", "DCI importance (GBT)")

    print("\n" + scores_table(result))
    print(f"\nwrote {out_dir / 'metrics.json'} (preset: {preset})")
    return 0


def protocol_table(names: list[str], preset: str, overrides: dict[str, dict]) -> str:
    """Which sample sizes each metric uses: the preset's, with --set values marked."""
    from ldm_dis.commands.tables import text_table
    from ldm_dis.metrics import FAST_PROTOCOL

    rows = []
    for name in names:
        sizes = dict(FAST_PROTOCOL[name]) if preset == "fast" else {}
        sizes.update({k: f"{v} (--set)" for k, v in overrides.get(name, {}).items()})
        shown = ", ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                          for k, v in sizes.items())
        rows.append((name, shown or "published protocol"))
    return f"preset: {preset}\n" + text_table(("metric", "sample sizes"), rows)


def scores_table(result: dict) -> str:
    """One row per score, then the skipped metrics with the reason."""
    from ldm_dis.commands.tables import format_score, text_table

    rows = []
    for name, scores in result["scores"].items():
        for k, (key, value) in enumerate(scores.items()):
            rows.append((name if k == 0 else "", key, format_score(key, value),
                         f"{result['seconds'][name]:.1f}" if k == 0 else ""))
    for name, reason in result["skipped"].items():
        rows.append((name, "skipped", reason, ""))
    return text_table(("metric", "score", "value", "seconds"), rows)
