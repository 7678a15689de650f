"""lgrpo.jsonl: errors name the file, the line and what was wrong."""

import pytest

from lgrpo.jsonl import parse_line, read_jsonl


def test_read_jsonl_skips_blank_lines(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"a": 1, "b": 2}\n\n{"a": 3}\n')
    assert read_jsonl(str(f), ("a",)) == [{"a": 1, "b": 2}, {"a": 3}]


@pytest.mark.parametrize(
    ("line", "match"),
    [("{oops", "f.jsonl:7: not valid JSON"), ("[1, 2]", "f.jsonl:7: expected a JSON object, got list"),
     ('{"a": 1}', "f.jsonl:7: missing field.s. b")],
)  # fmt: skip
def test_parse_line_errors(line, match):
    with pytest.raises(ValueError, match=match):
        parse_line(line, 7, "f.jsonl", ("a", "b"))


def test_read_jsonl_names_the_label(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": 1}\n')
    with pytest.raises(ValueError, match=r"--predictions .*p\.jsonl:1: missing field\(s\) answer"):
        read_jsonl(str(f), ("id", "answer"), label="--predictions")
