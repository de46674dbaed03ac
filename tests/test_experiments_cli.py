"""The options every experiment runner shares."""

import subprocess
import sys

import pytest

from experiments.cli import ROOT, runner_parser


def test_runner_parser_defaults_and_choices(capsys):
    parser = runner_parser("doc", {"tiny": 1, "cpu": 2})
    args = parser.parse_args([])
    assert args.scale == "cpu" and not args.quiet and args.data_dir is None
    assert args.results == str(ROOT / "experiments" / "results")
    assert args.outputs == str(ROOT / "outputs" / "experiments")
    assert parser.parse_args(["--scale", "tiny", "--quiet"]).quiet
    with pytest.raises(SystemExit):
        parser.parse_args(["--scale", "paper"])  # not one of this runner's scales
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("runner", ["steal", "slowdown", "extraction", "fewcall"])
def test_runners_start_as_scripts(runner):
    """The README runs them as `python experiments/<runner>.py`, outside the package."""
    script = ROOT / "experiments" / f"{runner}.py"
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          cwd=ROOT / "experiments", timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--scale" in done.stdout
