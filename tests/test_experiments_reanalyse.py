"""The re-analysis of kept runtimes (experiments/reanalyse_timing.py) on runtimes with known exits."""

import numpy as np

from experiments import reanalyse_timing as runner


def test_analyse_scores_each_rule_against_the_true_exits():
    rng = np.random.default_rng(0)
    true = rng.choice(3, size=600)
    runtimes = np.array([1.0, 2.0, 4.0])[true] * np.exp(0.02 * rng.normal(size=600))
    result = runner.analyse(runtimes, true)
    for rule in ("estimator", "density rules only", "textbook"):
        assert result[rule]["found"] == 3 and result[rule]["accuracy"] == 1.0, result[rule]
    assert result["best rule"]["accuracy"] == 1.0
    shuffled = runner.analyse(runtimes, rng.permutation(true))  # exits unrelated to the times
    assert shuffled["estimator"]["balanced_accuracy"] < 0.5
    markdown = runner.write_markdown({"run-a": result}, {"run-a": np.bincount(true).tolist()})
    row = next(line for line in markdown.splitlines() if line.startswith("| run-a |"))
    assert row.count("3: 1.000 / 1.000; aligned 1.000 / 1.000") == 3 and row.endswith("| 1.000 / 1.000 |")
