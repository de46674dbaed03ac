"""The import structure of docs/architecture.md: data flows down the layers, no package reaches into
another's private modules, and no module imports itself round a cycle."""

import ast
import collections
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mexjax"
# Top to bottom; a package may import those on its own line or below, never above. `checkpoint` is a
# utility any layer may use.
LAYERS = (
    ("cli", "demo", "victim_training", "victim", "__main__"),
    ("serve",),
    ("attacks",),
    ("defenses",),
    ("metrics",),
    ("oracle",),
    ("train", "captioning"),
    ("nets",),
    ("exits",),
    ("data",),
    ("checkpoint", "results"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("mexjax", *path.relative_to(ROOT).with_suffix("").parts))
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the mexjax modules it imports (anywhere in the file, lazy imports included)."""
    edges = collections.defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("mexjax")
            ):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    edges[name].add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name.startswith("mexjax."))
    return edges


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(package: str) -> int:
    for i, members in enumerate(LAYERS):
        if package in members:
            return i
    raise AssertionError(f"package mexjax.{package} is in no layer of this test: add it (and to the docs)")


def test_every_import_goes_down_the_layers():
    edges = _imports(_modules())
    upward = sorted(
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if _package(b)
        and _package(a)
        and _package(a) != _package(b)
        and _layer(_package(b)) < _layer(_package(a))
    )
    assert not upward, f"imports against the layers (importer, imported): {upward}"


def test_no_package_imports_another_packages_private_modules():
    edges = _imports(_modules())
    reaching = []
    for a, targets in edges.items():
        for b in targets:
            parts = b.split(".")
            private = next(
                (i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")), None
            )
            if private is None:
                continue
            owner = ".".join(parts[:private])
            if a != owner and not a.startswith(owner + "."):
                reaching.append((a, b))
    assert not reaching, f"private modules imported from outside their package: {sorted(reaching)}"


def test_no_import_cycles():
    modules = _modules()
    edges = _imports(modules)
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if nxt not in modules or nxt == "mexjax":
                continue
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"


def test_the_old_victim_module_warns_and_names_the_new_places():
    import importlib
    import sys

    import pytest

    from mexjax import data, results, victim_training

    sys.modules.pop("mexjax.victim", None)
    with pytest.warns(DeprecationWarning, match="mexjax.victim_training"):
        old = importlib.import_module("mexjax.victim")
    assert old.train_victim is victim_training.train_victim
    assert old.VictimConfig is victim_training.VictimConfig
    assert old.prepare is data.fit_dataset and old.fit_to_input is data.fit_to_input
    assert old.machine_description is results.machine_description


def test_the_old_name_of_the_timing_attack_warns_and_delegates(monkeypatch):
    import pytest

    from mexjax.attacks import steal
    from mexjax.attacks.steal import timing

    monkeypatch.setattr(timing, "timing_attack", lambda *a, **k: ("called", a, k))
    with pytest.warns(DeprecationWarning, match="timing_attack"):
        assert steal.steal(1, 2, progress=False) == ("called", (1, 2), {"progress": False})


def test_the_stealing_package_exports_the_attacks_and_resolves_its_old_names_with_a_warning():
    """The top level holds the attacks, their configs, the result type and evaluation; what it exported
    before (building blocks) lives in the attack's module and still resolves from the top, warning."""
    import pytest

    from mexjax.attacks import steal

    exported = [name for name in steal.__all__ if not inspect.ismodule(getattr(steal, name))]
    assert len(exported) <= 16, exported
    for name in ("timing_attack", "knockoff", "noise_attack", "es_attack", "dfme", "maze", "few_call"):
        assert callable(getattr(steal, name))
    for old, (module, new) in {
        "pseudo_labels": ("fewcall", "pseudo_labels"),
        "StealResult": ("student_training", "StealResult"),
        "exit_prediction": ("timing", "score_exit_reading"),
    }.items():
        with pytest.warns(DeprecationWarning, match=f"steal.{module}.{new}"):
            assert getattr(steal, old) is getattr(getattr(steal, module), new)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        steal.nonsense  # noqa: B018
