"""lgrpo.jsonl: errors name the file, the line and what was wrong; a last line cut mid-write is dropped."""

import warnings

import pytest

from lgrpo.jsonl import TruncatedLineWarning, iter_jsonl, parse_line, read_jsonl


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


def _write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    "cut",
    ['{"a": 3, "b": "x', '{"a": 3', "{", '{"a": 3, "b": "é"}'.encode()[:-3]],  # the last: cut inside the é
)
def test_a_last_line_cut_mid_write_is_dropped_with_a_warning(tmp_path, cut):
    head = '{"a": 1}\n{"a": 2}\n'
    f = _write(tmp_path / "live.jsonl", head.encode() + (cut if isinstance(cut, bytes) else cut.encode()))
    with pytest.warns(TruncatedLineWarning, match=r"live\.jsonl:3: the last line was cut.*up to line 2"):
        assert read_jsonl(f, ("a",)) == [{"a": 1}, {"a": 2}]


def test_a_complete_last_line_without_newline_is_read(tmp_path):
    f = _write(tmp_path / "a.jsonl", '{"a": 1}\n{"a": 2}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [n for n, _ in iter_jsonl(f)] == [1, 2]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"a": 1}\n{"a": 2\n{"a": 3}\n', r"b\.jsonl:2: not valid JSON"),  # a bad line inside
        ('{"a": 1}\n{"a": 2\n', r"b\.jsonl:2: not valid JSON"),  # a bad last line that was finished (newline)
        ('{"a": 1}\n{oops\n{"a": 3', r"b\.jsonl:2: not valid JSON"),  # a bad line before a cut one
        ('{"a": 1}\n[1, 2]', r"b\.jsonl:2: expected a JSON object"),  # complete JSON, wrong shape: not a cut
        ('{"a": 1}\n{"c": 2}', r"b\.jsonl:2: missing field"),
    ],
)
def test_any_other_bad_line_is_an_error_naming_file_and_line(tmp_path, text, match):
    f = _write(tmp_path / "b.jsonl", text)
    with pytest.raises(ValueError, match=match):
        read_jsonl(f, ("a",))
