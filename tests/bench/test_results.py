"""bench/results.py keeps every benchmark's section apart."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))

from results import write_section  # noqa: E402


def test_a_section_is_appended_then_replaced_alone(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("a", "first a", path)
    write_section("b", "only b", path)
    write_section("a", "second a", path)
    text = path.read_text()
    assert text.startswith("# Benchmark results\n")
    assert "first a" not in text
    assert text.index("second a") < text.index("only b")
    assert text.count("<!-- a:start -->") == 1 and text.count("<!-- b:end -->") == 1
