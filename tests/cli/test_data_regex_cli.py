"""`facegan data prepare --layout regex`: a file-name-coded set in one command."""
from __future__ import annotations

from PIL import Image

PATTERN = r"(?P<subject>\d\d)\d\d(?P<expression>[a-g]?)\d+"
CODES = "a=neutral,=neutral,b=happy,c=sad,d=angry,e=disgust,f=fear,g=surprise"


def test_regex_layout_prepares_a_set_in_one_command(run, tmp_path):
    src = tmp_path / "faces_256x256"
    src.mkdir()
    for name in ("0101a02.jpg", "1201002.jpg", "0111b01.jpg", "0121c03.jpg", "1231g01.jpg"):
        Image.new("RGB", (40, 40), (90, 120, 110)).save(src / name)
    out = tmp_path / "prepared"
    code, stdout, err = run("data", "prepare", src, out, "--layout", "regex", "--pattern", PATTERN, "--map", CODES,
                            "--include-neutral", "--no-align", "--size", "32", "--test-ratio", "0.5")
    assert code == 0, err
    assert len((out / "index.csv").read_text().splitlines()) == 1 + 5 and "prepared 5/5" in stdout
    code, stdout, err = run("data", "prepare", src, tmp_path / "o2", "--layout", "regex",
                            "--pattern", "(?P<subject>x", "--no-align")
    assert code != 0 and "not a valid regular expression" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
