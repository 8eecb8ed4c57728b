"""What a plain `pip install convlstm` gives: the command line without the train extra, and the
example configs shipped inside the package."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import convlstm
from convlstm._extras import install_hint
from _helpers import run_cli_captured as run

# the import names of the packages the train extra installs (pyproject.toml's [train])
TRAIN_EXTRA = ("lightning", "lightning_fabric", "pytorch_lightning", "matplotlib", "PIL", "yaml", "h5netcdf")

_BLOCKER = f"""
import sys

class _NotInstalled:
    # finds nothing of the train extra, as in an environment where it was never installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAIN_EXTRA!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
for _name in list(sys.modules):
    if _name.split(".")[0] in {TRAIN_EXTRA!r}:
        del sys.modules[_name]
"""

_RUN_COMMANDS = """
import contextlib, io, json, sys
try:
    import lightning
    hidden = False
except ImportError:
    hidden = True
from convlstm import cli
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"hidden": hidden, "loaded": loaded, "results": results}))
"""


def _without_train_extra(tmp_path, argvs):
    """Run ``cli.main(argv)`` for each argv in a fresh Python where the train extra's packages
    cannot be imported (a sitecustomize that blocks them); return what each printed."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_BLOCKER))
    package_root = Path(convlstm.__file__).resolve().parents[1]
    env = {"PYTHONPATH": f"{site}:{package_root}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", _RUN_COMMANDS, json.dumps(argvs), json.dumps(TRAIN_EXTRA)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_base_install_help_version_models_config_and_a_clear_message(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"")
    argvs = [["--help"], ["--version"], ["models"], ["config"], ["config", "flow"], ["fit", "--help"],
             ["evaluate", "--help"], ["fit", "x.npy"], ["fit", "--config", "flow"], ["evaluate", "runs/x"],
             ["predict", "runs/x", "x.npy", "--out", "f.npy"], ["demo"],
             ["fit", "x.npy", "--model-option", "filters=[8,8]"]]
    got = _without_train_extra(tmp_path, argvs)
    assert got["hidden"], "the blocker did not hide lightning: this test would prove nothing"
    assert got["loaded"] == [], f"the train extra was imported anyway: {got['loaded']}"
    res = {" ".join(r["argv"]): r for r in got["results"]}
    for argv in ("--help", "--version", "models", "config", "config flow", "fit --help", "evaluate --help"):
        assert res[argv]["code"] == 0, res[argv]
        assert "Traceback" not in res[argv]["err"]
    assert f"convlstm {convlstm.__version__}" in res["--version"]["out"]
    assert "keras-nextframe" in res["models"]["out"] and "convlstm-warp" in res["models"]["out"]
    assert "flow" in res["config"]["out"] and "radar" in res["config"]["out"]
    assert "model: keras-nextframe" in res["config flow"]["out"]
    assert "--max-epochs" in res["fit --help"]["out"]
    for argv in ("fit x.npy", "fit --config flow", "evaluate runs/x", "predict runs/x x.npy --out f.npy", "demo",
                 "fit x.npy --model-option filters=[8,8]"):
        r = res[argv]
        assert r["code"] not in (0, None), r
        assert install_hint("train") in r["err"], r
        assert "Traceback" not in r["err"], r


def test_python_m_convlstm_runs_the_command_line():
    package_root = Path(convlstm.__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "convlstm", "--version"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(package_root), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == f"convlstm {convlstm.__version__}", proc.stderr


# ---------------------------------------------------------------------------------- bundled configs
def _package_config_files():
    return sorted(p for p in Path(convlstm.__file__).resolve().parent.joinpath("configs").glob("*.yaml"))


def test_example_configs_live_in_the_package_and_are_declared_as_package_data():
    files = _package_config_files()
    assert {f.stem for f in files} >= {"flow", "radar", "demo", "multi-gpu"}
    pyproject = Path(convlstm.__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():  # a source checkout: setuptools puts package data in the wheel only if declared
        tomllib = pytest.importorskip("tomllib")
        data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["convlstm"]
        assert "configs/*.yaml" in data


def test_bundled_configs_load_by_name_and_are_valid():
    from convlstm.training import bundled_configs, load_config, read_bundled_config

    names = bundled_configs()
    assert sorted(names) == sorted(f.stem for f in _package_config_files())
    for f in _package_config_files():
        assert names[f.stem] == f.read_text().splitlines()[0].lstrip("# ").strip()
        assert read_bundled_config(f.stem) == f.read_text() == read_bundled_config(f.name)
        assert load_config(f.stem) == load_config(f)  # the name reads the file in the package
    with pytest.raises(FileNotFoundError, match="bundled configs are demo, flow"):
        read_bundled_config("nope")
    with pytest.raises(FileNotFoundError, match="nor is it a bundled config"):
        load_config("nope")


def test_config_command_lists_and_prints_and_fit_takes_a_name(capsys, tmp_path, monkeypatch):
    import yaml  # noqa: F401
    from convlstm.training import FitConfig, load_config

    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "config")
    assert code == 0
    for f in _package_config_files():
        assert f.stem in out
    code, out, _ = run(capsys, "config", "flow")
    assert code == 0 and out == (Path(convlstm.__file__).parent / "configs" / "flow.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(out)  # what a user does: save it, edit it, train with it
    assert load_config(tmp_path / "mine.yaml") == load_config("flow")
    code, _, err = run(capsys, "config", "nope")
    assert code == 2 and "nope" in err and "flow" in err

    code, _, err = run(capsys, "fit", "--config", "flow", "--save-config", "a.yaml")
    assert code == 0, err
    assert load_config(tmp_path / "a.yaml") == load_config("flow")
    # a file of that name, where there is one, wins over the bundled config
    (tmp_path / "flow").write_text("data: mine.npy\ninput_steps: 9\n")
    code, _, err = run(capsys, "fit", "--config", "flow", "--save-config", "b.yaml")
    assert code == 0, err
    cfg = load_config(tmp_path / "b.yaml")
    assert cfg.data == "mine.npy" and cfg.input_steps == 9
    bundled = load_config(Path(convlstm.__file__).parent / "configs" / "flow.yaml")
    assert cfg.model == FitConfig().model != bundled.model  # nothing of the bundled flow.yaml


# ---------------------------------------------------------------------------------- install hints
def test_install_hint_names_a_command_that_works_without_the_package_index():
    from convlstm import _extras

    for extra in _extras.EXTRAS:
        hint = install_hint(extra)
        assert hint.startswith(f'pip install ".[{extra}]"') and "clone" in hint
        assert f'"dist/convlstm-{convlstm.__version__}-py3-none-any.whl[{extra}]"' in hint
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        install_hint("gpu")
    pyproject = Path(convlstm.__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():  # a source checkout: the extras named are those pyproject.toml declares
        tomllib = pytest.importorskip("tomllib")
        declared = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
        assert sorted(declared) == sorted(_extras.EXTRAS)


def test_every_message_about_an_extra_is_built_by_install_hint():
    """No source file spells out an install command of its own: ``pip install "convlstm[...]"``
    (which the package index cannot serve) appears nowhere but in the helper's explanation."""
    package = Path(convlstm.__file__).resolve().parent
    spelled = [f"{p.relative_to(package)}:{n}" for p in sorted(package.rglob("*.py")) if p.name != "_extras.py"
               for n, line in enumerate(p.read_text().splitlines(), 1) if "convlstm[" in line]
    assert spelled == []
    from convlstm import extrapolation, onnx, training

    assert training.TRAIN_EXTRA_INSTALL == install_hint("train")
    assert onnx.INSTALL_HINT == install_hint("onnx")
    assert extrapolation._INSTALL == install_hint("radar")


def test_the_install_pages_give_commands_that_work_without_the_package_index():
    """README.md and docs/install.md install from a clone, a built wheel of this version, or the git
    URL; no command asks the package index for convlstm."""
    root = Path(convlstm.__file__).resolve().parents[2]
    pages = [root / "README.md", root / "docs" / "install.md"]
    if not all(p.is_file() for p in pages):
        pytest.skip("not a source checkout")
    for page in pages:
        text = page.read_text(encoding="utf-8")
        commands = [line.split("#")[0].strip() for line in text.splitlines() if line.startswith("pip install")]
        assert 'pip install ".[train]"' in commands, page
        assert f'pip install "dist/convlstm-{convlstm.__version__}-py3-none-any.whl[train]"' in commands, page
        assert 'pip install "convlstm[train] @ git+https://github.com/OWNER/convlstm"' in commands, page
        from_index = [c for c in commands if c.startswith(("pip install convlstm", 'pip install "convlstm['))
                      and " @ git+" not in c]
        assert from_index == [], page
