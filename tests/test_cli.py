import subprocess
import sys

from ldm_dis.cli import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "ldm_dis.cli", "--help"], capture_output=True, text=True, check=True)
    assert "data" in result.stdout


def test_import_sets_passive_openmp_wait_unless_the_user_chose():
    code = "import os, ldm_dis; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert out.stdout.strip() == "ACTIVE"


def _every_parser():
    """(prog, parser) of every command and sub-command, each built as `ldm-dis NAME --help` builds it."""
    import argparse

    from ldm_dis.cli import build_parser

    found = []
    for name in COMMANDS:
        stack = [build_parser(name)]
        while stack:
            parser = stack.pop()
            found.append((parser.prog, parser))
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    stack += [p for n, p in action.choices.items() if n == name or parser.prog != "ldm-dis"]
    return found


def test_help_is_written_for_users():
    parsers = _every_parser()
    assert len(parsers) > 15  # every command and sub-command (sample interchange, plot curves, data show, ...)
    for prog, parser in parsers:
        text = parser.format_help()
        for bad in ("``", ":func:", ":mod:", ":class:", "SPEC", "TODO", "placeholder", "shared/"):
            assert bad not in text, f"{prog} --help shows {bad!r}"
        if prog != "ldm-dis":
            assert parser.description, f"{prog} has no description"


def test_options_show_their_defaults():
    from ldm_dis.cli import build_parser

    sub = next(a for a in build_parser("attention")._actions if a.dest == "command").choices["attention"]
    text = sub.format_help()
    assert "(default: 4)" in text and "(default: 0)" in text  # --images, --seed
    assert "model.diffusion.sample_steps" in text  # --steps: the run's own, not a fixed 100


def test_a_run_is_named_the_same_way_by_every_command():
    takes_run = {prog: [a.metavar for a in parser._actions if not a.option_strings and a.dest == "run"]
                 for prog, parser in _every_parser()}
    expected = {f"ldm-dis {c}" for c in ("export", "evaluate", "attention", "sample interchange", "sample interpolate",
                                          "sample traverse", "sample swap", "plot scatter", "plot curves")}
    assert {prog for prog, run in takes_run.items() if run} == expected
    assert all(takes_run[prog] == ["RUN"] for prog in expected)


def test_version(capsys):
    from ldm_dis.cli import package_version

    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"ldm-dis {package_version()}"
    assert package_version().count(".") >= 1


def test_quickstart_summary_is_a_table_with_counts_as_integers():
    from ldm_dis.commands.quickstart import _summary

    scores = {"dci": {"disentanglement": 0.0520}, "infomec": {"infom": 0.4428, "num_active_codes": 10.0}}
    report = {"metrics": scores, "training": {"ldm": {"steps": 700, "images_total": 22400, "images_per_s": 80.2,
                                                      "end": "max_steps"}},
              "stages": {"train": {"seconds": 60.0, "peak_gpu_memory_bytes": None}}, "total_seconds": 90.0}
    lines = _summary(report).splitlines()
    assert lines[0].split() == ["metric", "score"] and set(lines[1]) == {"-"}
    assert lines[2].split() == ["dci.disentanglement", "0.052"]
    assert lines[4].split() == ["infomec.num_active_codes", "10"]
    assert "700 steps, 22,400 images, 80 images/s (stopped by max_steps)" in "\n".join(lines)
    assert lines[-1].split() == ["time:", "total", "1.5", "min"]
