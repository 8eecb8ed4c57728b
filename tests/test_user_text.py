"""What users read describes the software, its measurements and the machines they ran on: the
README, the documentation pages, the benchmark records and every string of the package (messages,
help, docstrings) speak of no issue tracker entries and no working sessions.

Names that merely contain the words (onnxruntime's ``InferenceSession``) are not words of their
own and pass; a bug report elsewhere is cited by its repository and number (``h5py#2088``).
"""
import ast
import re
from pathlib import Path

import pytest

import convlstm

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(convlstm.__file__).resolve().parent
WORDS = re.compile(r"\b(issues?|sessions?)\b", re.I)


def _pages():
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in pages if p.is_file()]


def _strings(path: Path):
    """(line, text) of every string literal of a Python file: messages, help, docstrings, and the
    literal parts of f-strings."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _hits(text: str):
    return [text[max(0, m.start() - 40):m.end() + 40].replace("\n", " ") for m in WORDS.finditer(text)]


@pytest.mark.skipif(not (ROOT / "README.md").is_file(), reason="not a source checkout")
def test_pages_speak_of_the_software_not_of_its_making():
    found = [f"{p.relative_to(ROOT)}:{n}: ...{hit}..." for p in _pages()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) for hit in _hits(line)]
    assert found == [], "\n".join(found)


def test_package_strings_speak_of_the_software_not_of_its_making():
    found = [f"{p.relative_to(PACKAGE)}:{n}: ...{hit}..." for p in sorted(PACKAGE.rglob("*.py"))
             for n, text in _strings(p) for hit in _hits(text)]
    assert found == [], "\n".join(found)


def test_the_scan_sees_what_it_should():
    # guards the scan itself: the pages and modules are found, and the pattern catches the words
    assert len(_pages()) >= 10 or not (ROOT / "README.md").is_file()
    assert any(p.name == "cli.py" for p in PACKAGE.rglob("*.py"))
    assert _hits("see Issue 14's figures") and _hits("this session's machine")
    assert not _hits("onnxruntime.InferenceSession(path)") and not _hits("h5py#2088")
