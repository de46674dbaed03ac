"""JSON-lines result records: append, read back, survive a cut line."""

import pytest

from mexjax import results
from mexjax.results import BadRecordLine, append_record, read_records


def test_records_round_trip_and_skip_a_cut_line(tmp_path, capsys):
    path = tmp_path / "new" / "r.jsonl"
    assert read_records(path) == []
    append_record(path, {"cell": "a", "value": 1.5})
    append_record(path, {"cell": "b", "value": [1, 2]})
    with path.open("a") as f:
        f.write('{"cell": "c", "val')  # an interrupted write
    assert read_records(path) == [{"cell": "a", "value": 1.5}, {"cell": "b", "value": [1, 2]}]
    assert "unreadable line 3" in capsys.readouterr().err


def test_strict_reading_tells_a_cut_last_line_from_a_corrupt_file(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"epoch": 1}\n\n{"epoch": 2}\n{"epo')
    skipped = []
    records = read_records(path, strict=True, on_skip=lambda number, line: skipped.append(number))
    assert records == [{"epoch": 1}, {"epoch": 2}] and skipped == [4]  # blank line 2 ignored
    path.write_text('{"epoch": 1}\n[1, 2]\n{"epoch": 3}\n')
    assert read_records(path, is_record=lambda r: isinstance(r, dict), on_skip=lambda *a: None) == [
        {"epoch": 1},
        {"epoch": 3},
    ]
    with pytest.raises(BadRecordLine, match="line 2") as err:
        read_records(path, is_record=lambda r: isinstance(r, dict), strict=True)
    assert err.value.number == 2 and err.value.line == "[1, 2]"


def test_machine_description_names_the_cpu_count_and_jax():
    import os

    import jax

    text = results.machine_description()
    assert f"{os.cpu_count()} CPU cores" in text and f"JAX {jax.__version__}" in text
