"""Check that a built documentation site works opened from disk: every relative link and asset
of every HTML page names a file that exists (a folder URL would show a file listing there).

Usage::

    python tools/site_links.py site          # exit 1 and one line per broken link
"""
from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import List, Tuple
from urllib.parse import unquote, urlsplit

#: attributes that point at another file
LINK_ATTRIBUTES = ("href", "src")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: List[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        for name, value in attrs:
            if name in LINK_ATTRIBUTES and value:
                self.targets.append(value)


def _is_local(target: str) -> bool:
    parts = urlsplit(target)
    return not (parts.scheme or parts.netloc or target.startswith("#") or target.startswith("data:"))


def broken_links(site: Path) -> List[Tuple[Path, str, str]]:
    """``(page, link, why)`` for every local link of the HTML pages under ``site`` that does not
    name an existing file (a missing path, a folder, or an absolute path)."""
    site = Path(site)
    broken = []
    for page in sorted(site.rglob("*.html")):
        if page.relative_to(site).as_posix() == "404.html":   # a web server's page: never opened from disk
            continue
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for target in parser.targets:
            if not _is_local(target):
                continue
            path = unquote(urlsplit(target).path)
            if not path:
                continue
            if path.startswith("/"):   # from file:// this is the root of the disk, not of the site
                broken.append((page, target, "an absolute path (resolves to the disk's root from disk)"))
                continue
            resolved = page.parent / path
            if resolved.is_dir():
                broken.append((page, target, "a folder (shows a file listing from disk)"))
            elif not resolved.is_file():
                broken.append((page, target, "missing"))
    return broken


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/site_links.py SITE_DIR", file=sys.stderr)
        return 2
    site = Path(argv[0])
    if not (site / "index.html").is_file():
        print(f"{site}/index.html does not exist: build the site first (make docs)", file=sys.stderr)
        return 2
    broken = broken_links(site)
    for page, target, why in broken:
        print(f"{page.relative_to(site)}: {target}: {why}")
    pages = len(list(site.rglob("*.html")))
    print(f"{pages} pages checked, {len(broken)} broken local link(s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
