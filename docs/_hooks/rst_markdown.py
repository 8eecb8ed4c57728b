r"""The docstrings' reStructuredText in Markdown, for the API pages. The docstrings are written
for ``help()`` and Sphinx, in reStructuredText roles (``:class:`x```, ``:math:`x```,
``.. math::`` blocks, double back-quotes); MkDocs renders Markdown. :func:`markdown_from_rst` rewrites them (``rst_roles.py`` applies it as the
site is built, leaving the source untouched):

- ``:class:`x``` / ``:func:`` / ``:meth:`` / ``:attr:`` / ``:mod:`` / ``:data:`` -> `` `x` ``
  (a leading ``~`` drops the module path, as in Sphinx);
- ``:math:`x``` -> ``\(x\)`` and a ``.. math::`` block -> ``\[ ... \]`` (MathJax, through
  ``pymdownx.arithmatex``);
- ````x```` -> `` `x` ``.
"""
from __future__ import annotations

import re
import textwrap

_ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|mod|data|obj|exc):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_MATH_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*\n(?P<body>(?:(?P=indent)[ \t]+.*\n|[ \t]*\n)+)",
                         re.M)


def _math_block(match: re.Match) -> str:
    indent = match.group("indent")
    body = textwrap.dedent(match.group("body")).strip("\n")
    lines = [indent + "\\["] + [indent + line for line in body.splitlines()] + [indent + "\\]"]
    return "\n".join(lines) + "\n\n"


def _role(match: re.Match) -> str:
    name = match.group(2)
    return f"`{name.split('.')[-1]}`" if match.group(0).split("`")[1].startswith("~") else f"`{name}`"


def markdown_from_rst(text: str) -> str:
    """The docstring ``text`` with its reStructuredText roles and math blocks in Markdown."""
    text = _MATH_BLOCK.sub(_math_block, text if text.endswith("\n") else text + "\n")
    text = _MATH_ROLE.sub(lambda m: "\\(" + m.group(1) + "\\)", text)
    text = _ROLE.sub(_role, text)
    return _LITERAL.sub(lambda m: "`" + m.group(1) + "`", text).rstrip("\n")
