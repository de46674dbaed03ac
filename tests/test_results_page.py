"""docs/results.md quotes only what its sources in experiments/results/ hold.

The page is split at its `## ` headings. Every section names its files on a `Source:` line (paths in
backticks, under experiments/results/; a folder stands for the text files in it). Every number in the
section's text must appear in those files: as written (thousands commas dropped), as the percentage of a
fraction or the fraction of a percentage (68.7 % and 0.687), or rounded half-up to the digits quoted
(0.28 for 0.275, 14.9x for 14.90x). Dates (2026-11-26) and clock times (06:15) must appear as written.

Not checked, because they state the setting rather than a result: the heading, the `Source:` line,
`Conditions:` lines (the command and sizes a run was made with), and `code` spans (commands, paths,
names). The page's opening, before the first section, quotes no results and is not checked.
"""

import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results.md"
RESULTS = ROOT / "experiments" / "results"
TEXT_SUFFIXES = {".md", ".jsonl", ".json", ".log", ".txt"}

_DATE_OR_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{2}:\d{2}\b")
# A number in prose: not part of a word (ResNet56, L2, CIFAR-10, BLEU-4, top-1) or of a fraction's
# denominator; a trailing "x" (14.9x) or "%" is allowed.
_PROSE_NUMBER = re.compile(r"(?<![\w.,/])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!(?!x\b)[\w/])")
_FILE_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) for each `## ` section of the page."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def source_paths(body: str) -> list[Path]:
    lines = [line for line in body.splitlines() if line.startswith("Source:")]
    assert len(lines) == 1, "a section needs exactly one `Source:` line"
    paths = [ROOT / p for p in re.findall(r"`([^`]+)`", lines[0])]
    assert paths, "the `Source:` line names no file"
    for path in paths:
        assert path.is_relative_to(RESULTS), f"{path} is not under experiments/results/"
        assert path.exists(), f"{path} does not exist"
    return paths


def source_text(paths: list[Path]) -> str:
    files = []
    for path in paths:
        files += sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES) if path.is_dir() else [path]
    return "\n".join(f.read_text() for f in files)


def checked_text(body: str) -> str:
    """The section's prose and tables: without the Source / Conditions lines and code spans."""
    kept, in_conditions = [], False  # a Conditions: paragraph runs to the next blank line
    for line in body.splitlines():
        if line.startswith("Conditions:"):
            in_conditions = True
        elif not line.strip():
            in_conditions = False
        if not in_conditions and not line.startswith("Source:"):
            kept.append(line)
    return re.sub(r"`[^`]*`", " ", "\n".join(kept))


def prose_numbers(text: str) -> tuple[list[str], list[str]]:
    """(dates and times, numbers) quoted in `text`."""
    stamps = _DATE_OR_TIME.findall(text)
    rest = _DATE_OR_TIME.sub(" ", text)
    numbers = [m.group(1).replace(",", "") + (m.group(2) or "") for m in _PROSE_NUMBER.finditer(rest)]
    return stamps, numbers


def file_numbers(text: str) -> set[Decimal]:
    grouped = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,922 -> 1922 (the ungrouped reading is kept too)
    return {Decimal(n) for n in _FILE_NUMBER.findall(text) + _FILE_NUMBER.findall(grouped)}


def found(number: str, candidates: set[Decimal]) -> bool:
    quoted = Decimal(number)
    step = Decimal(1).scaleb(quoted.as_tuple().exponent)  # 0.01 for "0.28", 1 for "27"
    for value in candidates:
        for scaled in (value, value * 100, value / 100):
            if scaled.quantize(step, rounding=ROUND_HALF_UP) == quoted:
                return True
    return False


def missing(body: str) -> list[str]:
    text = source_text(source_paths(body))
    candidates = file_numbers(text)
    stamps, numbers = prose_numbers(checked_text(body))
    return [s for s in stamps if s not in text] + [n for n in numbers if not found(n, candidates)]


PAGE_SECTIONS = sections(PAGE.read_text())


def test_the_page_has_sections():
    assert len(PAGE_SECTIONS) >= 10


@pytest.mark.parametrize(("heading", "body"), PAGE_SECTIONS, ids=[h for h, _ in PAGE_SECTIONS])
def test_every_quoted_number_is_in_the_section_sources(heading, body):
    assert missing(body) == [], f"numbers in '{heading}' that its Source files do not hold"


def test_the_check_fails_on_a_number_its_sources_lack():
    body = next(b for h, b in PAGE_SECTIONS if "few-call" in h.lower())
    assert missing(body) == []
    assert missing(body.replace("24.2 %", "24.7 %")) == ["24.7"]
    assert missing(body.replace("1,000 test images", "1,234 test images")) == ["1234"]
    assert prose_numbers("ResNet56 on CIFAR-10, BLEU-4, L2, 14.9x, 1,922 and 84.9 % on 2026-11-26 06:15") == (
        ["2026-11-26", "06:15"],
        ["14.9", "1922", "84.9"],
    )
    assert found("84.9", {Decimal("0.849")}) and found("0.28", {Decimal("0.275")})
    assert not found("0.27", {Decimal("0.275")})


def test_every_section_names_existing_sources():
    for heading, body in PAGE_SECTIONS:
        assert source_paths(body), heading
