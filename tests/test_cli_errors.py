"""How the command line reports what goes wrong: a bad value or a missing file is the user's
(exit 2, one line naming the flag), a file the system refuses to write is the system's (exit 1,
one line naming the path and why), anything else is a bug and shows its traceback."""
import errno
import os

import numpy as np
import pytest

pytest.importorskip("lightning")

from convlstm import cli
from _helpers import run_cli_captured as run


# tiny models run fastest on one thread (see conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ("--layout", "THW", "--input-steps", "2", "--output-steps", "1", "--model", "keras-nextframe",
        "--model-option", "filters=[2]", "--max-epochs", "1", "--batch-size", "4", "--accelerator", "cpu",
        "--no-evaluate", "--no-progress")


def grid(tmp_path):
    path = tmp_path / "grid.npy"
    np.save(path, np.random.default_rng(0).random((30, 6, 6)).astype(np.float32))
    return path


def one_line(err):
    lines = err.strip().splitlines()
    return len(lines) == 1 and "Traceback" not in err


# ---------------------------------------------------------------------------------- the user's errors: exit 2
def test_a_bad_flag_value_is_one_line_naming_the_flag(capsys, tmp_path):
    code, _, err = run(capsys, "fit", "x.npy", "--batch-size", "0", "--save-config", str(tmp_path / "c.yaml"))
    assert code == 2 and one_line(err), err
    assert err.strip() == "convlstm fit: error: --batch-size must be an integer >= 1; got 0"


@pytest.mark.parametrize("option, message", [
    ("filters=[2.5]", "filters[0] must be a positive int, got 2.5"),  # a TypeError to Python callers
    ("output_activation=5", "output_activation must be an activation name, None or a callable, got int"),
    ("nosuch=1", "unknown option(s) nosuch"),
])
def test_a_model_option_of_the_wrong_type_or_name_is_a_user_error(capsys, tmp_path, option, message):
    code, _, err = run(capsys, "fit", str(grid(tmp_path)), *TINY, "--model-option", option,
                       "--run-dir", str(tmp_path / "run"))
    assert code == 2 and one_line(err) and message in err, err


@pytest.mark.parametrize("argv, said", [
    (["fit", "x.npy", "--lr-rate", "3"], "unrecognized flag --lr-rate (did you mean --lr?)"),
    (["fit", "x.npy", "--learning-rate", "3"], "unrecognized flag --learning-rate (did you mean --lr?)"),
    (["fit", "x.npy", "--epochs", "3"], "unrecognized flag --epochs (did you mean --max-epochs?)"),
    (["fit", "x.npy", "--batchsize", "4"], "unrecognized flag --batchsize (did you mean --batch-size?)"),
    (["fit", "x.npy", "--limit", "4"],
     "unrecognized flag --limit (did you mean --limit-train-batches or --limit-val-batches?)"),
    (["evaluate", "runs/x", "--thresold", "3"], "unrecognized flag --thresold (did you mean --thresholds?)"),
    (["predict", "runs/x", "x.npy", "--out", "f.npy", "--all-window"],
     "unrecognized flag --all-window (did you mean --all-windows?)"),
    (["evaluate", "runs/x", "other.npy"], "unrecognized argument: other.npy"),
])
def test_a_mistyped_flag_is_named_with_the_closest_flags_of_its_command(capsys, argv, said):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert f"usage: convlstm {argv[0]}" in err, err  # the command's usage, not the top level's
    assert err.strip().splitlines()[-1].startswith(f"convlstm {argv[0]}: error: {said}"), err


def test_a_prefix_of_a_flag_is_not_taken_for_it(capsys, tmp_path):
    """--input-step is not silently --input-steps (nor --lr a prefix of another flag's name)."""
    code, _, err = run(capsys, "fit", "x.npy", "--input-step", "3", "--save-config", str(tmp_path / "c.yaml"))
    assert code == 2 and "unrecognized flag --input-step (did you mean --input-steps?)" in err, err
    assert not (tmp_path / "c.yaml").exists()
    code, _, err = run(capsys, "evaluate", "runs/x", "--out", "f")  # predict's --out; evaluate has --out-dir
    assert code == 2 and "unrecognized flag --out (did you mean --out-dir?)" in err, err


def test_a_missing_file_is_a_user_error(capsys, tmp_path):
    code, _, err = run(capsys, "fit", str(tmp_path / "missing.npy"), "--no-progress")
    assert code == 2 and one_line(err) and "missing.npy" in err, err


# ---------------------------------------------------------------------------------- the system's: exit 1
def test_an_unwritable_folder_is_one_line_naming_the_path(capsys, tmp_path):
    data = grid(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("permissions do not stop this user (root); the test below raises the error instead")
        saved = run(capsys, "fit", "x.npy", "--save-config", str(locked / "c.yaml"))
        trained = run(capsys, "fit", str(data), *TINY, "--run-dir", str(locked / "run"))
    finally:
        locked.chmod(0o700)
    for code, _, err in (saved, trained):
        assert code == 1 and one_line(err), err
        assert str(locked) in err and os.strerror(errno.EACCES) in err, err
    assert not (locked / "run").exists()


@pytest.mark.parametrize("error", [errno.EACCES, errno.ENOSPC, errno.EROFS], ids=errno.errorcode.get)
def test_a_file_the_system_refuses_is_one_line_naming_the_path_and_why(capsys, tmp_path, monkeypatch, error):
    from convlstm import _io

    def refuse(path, text):
        raise OSError(error, os.strerror(error), str(path))

    monkeypatch.setattr(_io, "write_text", refuse)
    out = tmp_path / "c.yaml"
    code, _, err = run(capsys, "fit", "x.npy", "--save-config", str(out))
    assert code == 1 and one_line(err), err
    assert err.strip() == f"convlstm fit: error: {out}: {os.strerror(error)}"


# ---------------------------------------------------------------------------------- bugs: the traceback
@pytest.mark.parametrize("bug", [KeyError("split"), TypeError("unsupported operand type(s)"),
                                 AttributeError("'NoneType' object has no attribute 'shape'"),
                                 RuntimeError("an internal error")])
def test_a_bug_shows_its_traceback(tmp_path, monkeypatch, bug):
    from convlstm.training.config import FitConfig

    def broken(cls, values, base=None):
        raise bug

    monkeypatch.setattr(FitConfig, "from_dict", classmethod(broken))  # what applies the flags to the config
    with pytest.raises(type(bug)) as info:
        cli.main(["fit", "x.npy", "--save-config", str(tmp_path / "c.yaml")])
    assert info.value is bug


@pytest.mark.parametrize("bug", [KeyError("convlstm-warp"),
                                 ImportError("cannot import name 'info' from 'convlstm.models'", name="convlstm.models")])
def test_a_bug_in_another_command_shows_its_traceback(monkeypatch, bug):
    from convlstm import models

    def broken(name):
        raise bug

    monkeypatch.setattr(models, "model_info", broken)
    with pytest.raises(type(bug)) as info:
        cli.main(["models"])
    assert info.value is bug


def test_a_package_not_installed_is_one_line(capsys, monkeypatch):
    from convlstm import models

    def needs_pysteps(name):
        raise ModuleNotFoundError("No module named 'pysteps'", name="pysteps")

    monkeypatch.setattr(models, "model_info", needs_pysteps)
    code, _, err = run(capsys, "models")
    assert code == 2 and one_line(err) and "pysteps" in err, err


def test_convlstm_debug_shows_the_traceback_of_a_user_error(tmp_path, monkeypatch):
    from convlstm.training import ParameterError

    monkeypatch.setenv("CONVLSTM_DEBUG", "1")
    with pytest.raises(ParameterError, match="batch_size must be an integer >= 1"):
        cli.main(["fit", "x.npy", "--batch-size", "0", "--save-config", str(tmp_path / "c.yaml")])
