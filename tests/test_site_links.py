"""The built documentation site's link check (tools/site_links.py, run by CI after `make docs`)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_checker():
    spec = importlib.util.spec_from_file_location("site_links", ROOT / "tools" / "site_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_folder_links_and_missing_files_are_reported(tmp_path):
    checker = load_checker()
    (tmp_path / "install").mkdir()
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "style.css").write_text("")
    (tmp_path / "install.html").write_text('<a href="index.html#top">home</a>')
    (tmp_path / "index.html").write_text(
        '<link href="assets/style.css"><a href="install/">folder</a><a href="install.html">ok</a>'
        '<a href="gone.html">missing</a><a href="https://example.org/">web</a><a href="#x">anchor</a>'
        '<img src="assets/missing.png"><script src="/assets/style.css"></script>')
    broken = {(p.name, link, why.split(" ")[0]) for p, link, why in checker.broken_links(tmp_path)}
    assert broken == {("index.html", "install/", "a"), ("index.html", "gone.html", "missing"),
                      ("index.html", "assets/missing.png", "missing"), ("index.html", "/assets/style.css", "an")}
    assert checker.main([str(tmp_path)]) == 1


def test_a_site_whose_links_all_name_files_passes(tmp_path):
    checker = load_checker()
    (tmp_path / "index.html").write_text('<a href="page.html">p</a>')
    (tmp_path / "page.html").write_text('<a href="./index.html">i</a>')
    assert checker.broken_links(tmp_path) == []
    assert checker.main([str(tmp_path)]) == 0


def test_the_site_is_built_for_reading_from_disk():
    """mkdocs writes page.html, not page/index.html, so links work from file://."""
    text = (ROOT / "mkdocs.yml").read_text()
    assert "use_directory_urls: false" in text
    assert "tools/site_links.py site" in (ROOT / ".ci" / "run").read_text()
