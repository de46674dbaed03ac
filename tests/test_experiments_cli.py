"""The options every experiment runner shares."""

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
