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
