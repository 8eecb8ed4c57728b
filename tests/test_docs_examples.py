"""The Python examples of the README and of the documentation site (docs/) run, page by page.

The blocks of a page run in order in one namespace, in an empty folder, as a reader would paste them;
each block checks its own result with ``assert``. Files an example names (a user's own Keras model)
are made from the test fixtures first.
"""
import gzip
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras"
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path):
    return PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))


def provide_named_files(folder: Path) -> None:
    """The files the examples open, as a user would have them."""
    with gzip.open(FIXTURES / "k3_nextframe_2021.keras.gz") as src, open(folder / "nextframe.keras", "wb") as dst:
        shutil.copyfileobj(src, dst)


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_examples_run(page, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    provide_named_files(tmp_path)
    namespace = {"__name__": "__doc_example__"}
    for number, code in enumerate(python_blocks(page), start=1):
        exec(compile(code, f"{page.relative_to(ROOT)} (python block {number})", "exec"), namespace)


def test_the_pages_with_examples_are_found():
    # guards the block pattern itself: these pages hold Python examples, so a pattern that matched
    # nothing would otherwise pass with zero tests run
    found = {p.relative_to(ROOT).as_posix() for p in PAGES_WITH_CODE}
    assert {"README.md", "docs/index.md", "docs/layers.md", "docs/keras.md"} <= found
    assert sum(len(python_blocks(p)) for p in PAGES_WITH_CODE) >= 7


def test_api_pages_rewrite_rst_roles_into_markdown():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rst_markdown", ROOT / "docs" / "_hooks" / "rst_markdown.py")
    rst_roles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rst_roles)
    text = ("A :class:`torch.nn.Module` of :math:`F` channels, see :func:`~convlstm.data.load_grid`\n"
            "and ``padding``.\n\n    .. math::\n        y = W \\star x\n\n    Args:\n        x: input.\n")
    assert rst_roles.markdown_from_rst(text) == (
        "A `torch.nn.Module` of \\(F\\) channels, see `load_grid`\nand `padding`.\n\n"
        "    \\[\n    y = W \\star x\n    \\]\n\n    Args:\n        x: input.")
