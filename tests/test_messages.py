"""Error messages a newcomer meets: files that are not what their name says, NaN in the data, and
command-line errors that name the command line's flags (not Python's argument names)."""
import re

import numpy as np
import pytest
import torch

from convlstm import models
from convlstm.data import check_finite, load_grid
from _helpers import run_cli as run


# ---------------------------------------------------------------------------------- files
def test_a_text_file_named_npy_is_not_a_npy_file(tmp_path):
    (tmp_path / "notes.npy").write_text("time,rain\n0,1.5\n")
    with pytest.raises(ValueError, match=r"notes.npy is not a .npy file.*starts with b'time,r'") as info:
        load_grid(tmp_path / "notes.npy")
    assert "pickle" not in str(info.value)
    (tmp_path / "notes.npz").write_text("time,rain\n")
    with pytest.raises(ValueError, match=r"notes.npz is not a .npz file.*not a zip archive"):
        load_grid(tmp_path / "notes.npz")


def test_object_arrays_are_refused_without_suggesting_to_unpickle(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj.npy holds Python objects \(dtype object\)") as info:
        load_grid(tmp_path / "obj.npy")
    assert "allow_pickle" not in str(info.value)
    np.savez(tmp_path / "obj.npz", grid=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match=r"array 'grid' in .*obj.npz holds Python objects") as info:
        load_grid(tmp_path / "obj.npz", mmap=False)
    assert "allow_pickle" not in str(info.value)


def test_the_command_line_says_not_a_npy_file(tmp_path):
    import lightning  # noqa: F401
    (tmp_path / "notes.npy").write_text("1 2 3\n")
    code, _, err = run("fit", tmp_path / "notes.npy", "--no-progress")
    assert code == 2 and "is not a .npy file" in err and "pickle" not in err and "Traceback" not in err


def test_the_command_line_says_which_files_it_reads_and_how_to_convert_a_csv(tmp_path):
    import lightning  # noqa: F401
    (tmp_path / "rain.csv").write_text("0.0,1.5\n2.0,0.5\n")
    code, _, err = run("fit", tmp_path / "rain.csv", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "grids are read from .npy, .npz, .h5/.hdf5 and .nc (netCDF) files" in err
    assert "numpy.loadtxt" in err and "numpy.save" in err and "--layout 'THW'" in err
    assert "load_grid" not in err


# ---------------------------------------------------------------------------------- NaN
def _with_nan(tmp_path):
    s = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    s[5, 2, 3] = np.nan
    np.save(tmp_path / "g.npy", s)
    return tmp_path / "g.npy"


def test_nan_from_the_command_line_names_fill_nan(tmp_path):
    import lightning  # noqa: F401
    code, _, err = run("fit", _with_nan(tmp_path), "--layout", "THW", "--no-progress")
    assert code == 2
    assert "1 non-finite value(s) (1 NaN, 0 inf); the first at time 5, row 2, col 3" in err
    assert "--fill-nan" in err and "check_finite" not in err and "fill_nan" not in err and "fill=" not in err


def test_nan_from_python_names_the_parameter_of_the_call(tmp_path):
    import lightning  # noqa: F401
    from convlstm.training import GridDataModule

    with pytest.raises(ValueError, match=r"Give fill_nan=<number>"):
        GridDataModule(path=str(_with_nan(tmp_path)), layout="THW").setup()
    with pytest.raises(ValueError, match=r"check_finite\(series, fill="):
        check_finite(np.array([1.0, np.nan]))


# ---------------------------------------------------------------------------------- flags, not Python names
def test_every_fit_option_has_a_flag_to_name():
    import lightning  # noqa: F401
    import dataclasses

    from convlstm import cli
    from convlstm.training import FitConfig

    args = cli.build_parser().parse_args(["fit"])
    names = args.flag_names
    for f in dataclasses.fields(FitConfig):
        flag = names.get(f.name)
        assert flag is not None, f"FitConfig.{f.name} has no flag: a CLI error about it would name Python's field"
        assert flag.startswith("--") or flag == "DATA", (f.name, flag)
    assert names["fill_nan"] == "--fill-nan" and names["model_options"] == "--model-option"
    assert names["evaluate"] == "--no-evaluate" and names["data"] == "DATA"


@pytest.mark.parametrize("argv, flag, field", [
    (["--input-steps", "0"], "--input-steps", "input_steps"),
    (["--lr", "-1"], "--lr", "lr"),
    (["--split", "0.5", "0.5", "0.5"], "--split", "split"),
    (["--devices", "0"], "--devices", "devices"),
    (["--limit-train-batches", "0"], "--limit-train-batches", "limit_train_batches"),
    (["--scheduled-sampling", "2"], "--scheduled-sampling", "scheduled_sampling"),
    (["--memory-limit", "lots"], "--memory-limit", "memory_limit"),
    (["--loss", "balanced", "--loss-option", "weights=[1]"], "--loss-option", "loss_options"),
    (["--fss-scales", "3"], "--fss-scales", "fss_scales"),
])
def test_config_errors_from_the_command_line_name_the_flag(tmp_path, argv, flag, field):
    import lightning  # noqa: F401
    code, _, err = run("fit", "x.npy", *argv, "--save-config", tmp_path / "c.yaml")
    assert code == 2 and flag in err, err
    assert not re.search(rf"(?<![\w-]){field}(?!\w)", err), err  # the Python name, not inside the flag
    if field == "fss_scales":
        assert "--thresholds" in err  # the flag it needs


def test_key_and_split_errors_name_flags(tmp_path):
    import lightning  # noqa: F401
    np.savez(tmp_path / "two.npz", rain=np.zeros((30, 8, 8), np.float32), mask=np.zeros((30, 8, 8), np.float32))
    code, _, err = run("fit", tmp_path / "two.npz", "--layout", "THW", "--no-progress")
    assert code == 2 and "choose one with --key NAME" in err and "key=" not in err, err
    code, _, err = run("fit", tmp_path / "two.npz", "--key", "rain", "--no-progress")  # THWC by default: 3-D
    assert code == 2 and "--layout 'THWC' expects a 4-D array" in err and "--layout 'THW'" in err, err
    code, _, err = run("fit", tmp_path / "two.npz", "--key", "rain", "--layout", "THW", "--no-progress")
    assert code == 2 and "--split [0.7, 0.1, 0.2]" in err and "--input-steps + --gap + --output-steps" in err, err
    assert "fractions=" not in err and "n_time" not in err


def test_a_series_too_short_is_told_the_length_every_part_needs_at_once(tmp_path):
    """10 frames for windows of 9: every part is short, and the advice is the length that gives
    each part a window (89), not the train part's alone (13, after which val would need 90)."""
    import lightning  # noqa: F401
    np.save(tmp_path / "g.npy", np.zeros((10, 8, 8), np.float32))
    code, _, err = run("fit", tmp_path / "g.npy", "--layout", "THW", "--input-steps", "6", "--output-steps", "3",
                       "--run-dir", tmp_path / "run", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("the train part (a fraction 0.7 of 10 time steps) gets 7 steps, the val part (0.1) gets 1 and the test "
            "part (0.2) gets 2, fewer than one window needs (--input-steps + --gap + --output-steps = 9); use a "
            "series of 89 steps or more, or shorter windows") in err, err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- model options
@pytest.mark.parametrize("name", models.list_models())
@pytest.mark.parametrize("filters", [[4], [4, 4], [4, 4, 4, 4]])
def test_filters_alone_set_the_number_of_layers(name, filters):
    from convlstm.training.module import build_model  # what --model-option filters=[...] builds

    import lightning  # noqa: F401
    model = build_model(name, {"filters": filters}, input_steps=2, output_steps=2, frame_shape=(16, 16, 1))
    assert len(model.kernel_sizes) == len(filters)
    with torch.no_grad():
        y = model(torch.rand(1, 2, 16, 16, 1))
    assert y.shape == (1, 2, 16, 16, 1)


def test_keras_nextframe_kernel_sizes_follow_the_example():
    assert models.create("keras-nextframe").kernel_sizes == (5, 3, 1)  # the keras-io example
    assert models.create("keras-nextframe", filters=[8, 8]).kernel_sizes == (5, 3)
    assert models.create("keras-nextframe", filters=[8] * 4).kernel_sizes == (5, 3, 1, 1)
    assert models.create("keras-nextframe", filters=[8, 8], kernel_sizes=7).kernel_sizes == (7, 7)
    with pytest.raises(ValueError, match="kernel_sizes must have 2 values"):
        models.create("keras-nextframe", filters=[8, 8], kernel_sizes=[3, 3, 3])
