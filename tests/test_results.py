"""JSON-lines result records: append, read back, survive a cut line."""

from mexjax.results import append_record, read_records


def test_records_round_trip_and_skip_a_cut_line(tmp_path, capsys):
    path = tmp_path / "new" / "r.jsonl"
    assert read_records(path) == []
    append_record(path, {"cell": "a", "value": 1.5})
    append_record(path, {"cell": "b", "value": [1, 2]})
    with path.open("a") as f:
        f.write('{"cell": "c", "val')  # an interrupted write
    assert read_records(path) == [{"cell": "a", "value": 1.5}, {"cell": "b", "value": [1, 2]}]
    assert "unreadable line 3" in capsys.readouterr().err
