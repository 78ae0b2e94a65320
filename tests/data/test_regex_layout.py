"""The regex layout: subject and expression from file names, with a code map."""
from __future__ import annotations

import pytest
from PIL import Image

from facegan_kit.data.layouts import NEUTRAL_LABEL, parse_expression, parse_layout
from facegan_kit.data.regex_layout import parse_codes
from facegan_kit.errors import InputError

# The Taiwanese set's naming: performer, performance type, view, expression letter, take.
PATTERN = r"(?P<subject>\d\d)\d\d(?P<expression>[a-g]?)\d+"
CODES = "a=neutral,=neutral,b=happy,c=sad,d=angry,e=disgust,f=fear,g=surprise"


def _img(path, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (value, 120, 200 - value)).save(path)


@pytest.fixture()
def taiwanese_like(tmp_path):
    root = tmp_path / "faces_256x256"
    for name in ("0101a02.jpg", "1201002.jpg", "0111b01.jpg", "0121c03.jpg", "1231g01.jpg",
                 "0111x01.jpg", "notes.jpg"):
        _img(root / name)
    return root


def test_names_give_subject_and_expression(taiwanese_like):
    res = parse_layout(taiwanese_like, "regex", include_neutral=True, pattern=PATTERN, codes=CODES)
    got = {(r.path.name, r.subject, r.expression) for r in res.records}
    assert got == {("0101a02.jpg", "01", NEUTRAL_LABEL), ("1201002.jpg", "12", NEUTRAL_LABEL),
                   ("0111b01.jpg", "01", 3), ("0121c03.jpg", "01", 4), ("1231g01.jpg", "12", 5)}
    reasons = {p.rsplit("/", 1)[-1]: why for p, why in res.skipped}
    assert reasons == {"0111x01.jpg": "name does not match --pattern",
                       "notes.jpg": "name does not match --pattern"}


def test_neutral_left_out_unless_asked(taiwanese_like):
    res = parse_layout(taiwanese_like, "regex", pattern=PATTERN, codes=CODES)
    assert {r.expression for r in res.records} == {3, 4, 5}
    assert sum("neutral" in why for _, why in res.skipped) == 2


def test_without_a_map_the_code_is_an_expression_name(tmp_path):
    for subj, expr in (("s1", "happy"), ("s1", "SA"), ("s2", "bored")):
        _img(tmp_path / subj / f"{expr}_001.png")
    res = parse_layout(tmp_path, "regex", pattern=r"(?P<subject>[^/]+)/(?P<expression>[^_]+)_\d+")
    assert {(r.subject, r.expression) for r in res.records} == {("s1", 3), ("s1", 4)}
    assert [why for _, why in res.skipped] == ["unknown expression 'bored' (give --map CODE=EXPRESSION,...)"]


@pytest.mark.parametrize("pattern, codes, message", [
    (None, None, "needs --pattern"),
    ("(?P<subject>\\d+", None, "not a valid regular expression"),
    ("(?P<subject>\\d+)", None, "(?P<expression>...)"),
    (PATTERN, "b:happy", "must be CODE=EXPRESSION"),
    (PATTERN, "b=grumpy", "unknown expression 'grumpy'"),
    (PATTERN, "b=happy,b=sad", "names code 'b' twice"),
])
def test_bad_pattern_or_map_is_one_clear_error(taiwanese_like, pattern, codes, message):
    with pytest.raises(InputError, match=None) as err:
        parse_layout(taiwanese_like, "regex", pattern=pattern, codes=codes)
    assert message in str(err.value)


def test_pattern_with_another_layout_is_refused(taiwanese_like):
    with pytest.raises(InputError, match="--pattern is for the regex layout"):
        parse_layout(taiwanese_like, "folder", pattern=PATTERN)


def test_codes_are_case_sensitive_and_empty_code_allowed():
    assert parse_codes("A=happy,a=sad,=neutral", parse_expression) == {"A": 3, "a": 4, "": NEUTRAL_LABEL}
