"""The README's command reference and feature table agree with the code."""

import re
from pathlib import Path

import pytest

from videomdm.cli_reference import BEGIN, END, generate, main, readme_section, replace_section
from videomdm.representation import FeatureLayout

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_command_reference_is_generated_from_the_parser() -> None:
    assert readme_section(README.read_text()) == generate(), \
        "stale: run `python -m videomdm.cli_reference --update README.md`"


def test_every_command_is_in_the_reference() -> None:
    from videomdm.cli import build_parser

    text = generate(build_parser())
    for command in ("demo", "data lafan1", "train", "sample", "export", "view", "study-results", "render"):
        assert f"#### `videomdm {command}`" in text
    assert "| `--format FORMAT` | bvh, npy or humanml3d (required) |" in text


def test_update_and_check(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold text\n{END}\n\nmore\n")
    assert main(["--check", str(readme)]) == 1
    assert main(["--update", str(readme)]) == 0
    assert main(["--check", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith(f"{END}\n\nmore\n") and "old text" not in text
    with pytest.raises(ValueError, match="no generated command reference"):
        replace_section("# no markers\n", "x")


def test_readme_feature_table_matches_the_layout() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\d+):(\d+) \|", README.read_text(), re.M)
    slices = FeatureLayout(22).slices()
    assert {name: (int(a), int(b)) for name, a, b in rows} == {n: (s.start, s.stop) for n, s in slices.items()}
