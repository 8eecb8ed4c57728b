"""The griffe extension of the API pages (``mkdocs.yml``): every docstring shown goes through
:func:`rst_markdown.markdown_from_rst` (the module beside this file, which needs nothing but the
standard library, so that the tests can check it without the docs extra)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import griffe

_spec = importlib.util.spec_from_file_location("rst_markdown", Path(__file__).with_name("rst_markdown.py"))
_rst_markdown = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_rst_markdown)


class RstRoles(griffe.Extension):
    """Rewrite every docstring the API pages show (see ``rst_markdown.py``)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _rst_markdown.markdown_from_rst(obj.docstring.value)
