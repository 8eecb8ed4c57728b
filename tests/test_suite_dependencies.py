"""The test suite itself: a package of the ``test`` extra that is missing makes the tests that
need it fail, not skip (``conftest.py``), and the pure loss tests do not depend on Lightning."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import TEST_EXTRA_MODULES

TESTS = Path(__file__).resolve().parent


def _requirement_name(req: str) -> str:
    for stop in "<>=!~;[ ":
        req = req.split(stop)[0]
    return req.strip().lower()


def test_the_table_of_test_dependencies_is_the_test_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; not a package of the extra
    extra = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert sorted(map(_requirement_name, extra)) == sorted(TEST_EXTRA_MODULES.values())


def _run_with_conftest(pytester, monkeypatch, test_source: str, hidden: str):
    """Run ``test_source`` under this suite's conftest with the package ``hidden`` not importable."""
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_it=textwrap.dedent(test_source))
    for name in [hidden] + [m for m in sys.modules if m.startswith(hidden + ".")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed (submodules too,
        # which earlier tests of the same run may have imported)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


def test_a_missing_test_dependency_fails_instead_of_skipping(pytester, monkeypatch):
    result = _run_with_conftest(pytester, monkeypatch, """
        import pytest

        def test_needs_the_extra():
            pytest.importorskip("pysteps")

        def test_needs_something_else():
            pytest.importorskip("not_a_package_of_the_test_extra")

        def test_skips_for_its_own_reason():
            pytest.skip("no GPU here")
        """, hidden="pysteps")
    result.assert_outcomes(failed=1, skipped=2)
    result.stdout.fnmatch_lines(["*could not import 'pysteps'*", "*belongs to the test extra*"])


def test_a_module_level_skip_for_a_test_dependency_fails_collection(pytester, monkeypatch):
    result = _run_with_conftest(pytester, monkeypatch, """
        import pytest

        pytest.importorskip("keras.layers")

        def test_never_runs():
            pass
        """, hidden="keras")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*could not import 'keras.layers'*"])


def test_loss_tests_run_without_lightning():
    """test_losses.py with Lightning hidden: the loss tests pass; only the two training tests,
    which need it, fail (a module-level skip used to skip them all)."""
    code = ("import sys; sys.modules['lightning'] = None\n"
            "import pytest\n"
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-rfEs', {str(TESTS / 'test_losses.py')!r}]))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS.parent / "src"),
                                                                     os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], cwd=TESTS.parent, env=env, capture_output=True, text=True,
                         timeout=600).stdout
    summary = out.strip().splitlines()[-1]
    failed = sorted(line.split("::")[1].split(" ")[0].split("[")[0] for line in out.splitlines()
                    if line.startswith("FAILED "))
    assert "skipped" not in summary and "error" not in summary, out[-3000:]
    assert set(failed) == {"test_config_cli_and_module_take_loss_options",
                           "test_fit_with_loss_saves_options_and_reloads"}, out[-3000:]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 20, summary
