"""The README's ```python blocks run, so that a renamed or changed API breaks a test.

The blocks run in the order they appear, as one script: one namespace shared by all of them, as a reader
would paste them one after the other (a later block uses the net, victim and images of an earlier one).
They use random data and tiny networks, so the whole script takes seconds on a CPU. Blocks fenced as
```bash (the two commands, the command line) are not run.
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


CAPABILITIES = (
    "nets.build",
    "ExitRunner",
    "steal.timing_attack",
    "steal.knockoff",
    "metrics.evaluate",
    "slowdown.attack",
    "defenses.divqat",
    "steal.dfme",
    "steal.few_call",
    "serve.RemoteOracle",
)


def test_the_readme_has_a_block_per_capability():
    text = "\n".join(python_blocks(README.read_text()))
    assert [name for name in CAPABILITIES if name not in text] == []


def test_the_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a block writes lands here
    scope: dict = {"__name__": "readme"}
    for number, block in enumerate(python_blocks(README.read_text()), 1):
        exec(compile(block, f"README.md python block {number}", "exec"), scope)
