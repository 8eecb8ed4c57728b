import os
import re

import pytest
import torch

pytest_plugins = ("pytester",)  # tests/test_suite_dependencies.py runs small test files

# Keras 3 is the reference implementation in the tests; its torch backend needs no TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_HOME", os.path.join(os.path.dirname(__file__), ".keras_home"))
# "auto" follows its fixed rule here, the same choice in every run; tests/test_auto_timing.py
# tests the measured choice (the default) on its own
os.environ.setdefault("CONVLSTM_AUTO", "rule")
# fit/evaluate/predict would switch this test process's malloc to keeping freed memory
# (convlstm._heap), which changes the memory estimates of every later test; tests/test_heap.py
# tests it in processes of its own
os.environ.setdefault("CONVLSTM_KEEP_FREED_MEMORY", "0")

#: The ``test`` extra of pyproject.toml (what ``make test`` installs), as import name -> distribution.
#: A test that would skip because one of these is missing fails instead: a reference that is not
#: installed must not pass as a skipped test. Skips for what the extra cannot provide (a torch
#: built without NNPACK, a platform without SIGKILL, a Python without tomllib) stay skips.
#: tests/test_suite_dependencies.py checks this table against pyproject.toml.
TEST_EXTRA_MODULES = {
    "pytest": "pytest", "keras": "keras", "lightning": "lightning", "matplotlib": "matplotlib", "PIL": "pillow",
    "yaml": "pyyaml", "h5netcdf": "h5netcdf", "onnx": "onnx", "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript", "openvino": "openvino", "skimage": "scikit-image", "scipy": "scipy",
    "pysteps": "pysteps", "cv2": "opencv-python-headless", "xarray": "xarray", "zarr": "zarr", "pyproj": "pyproj",
}

# the reasons pytest.importorskip gives (module missing, or too old)
_IMPORT_SKIP = re.compile(r"could not import '([\w.]+)'|module '([\w.]+)' has __version__")


def _missing_test_dependency(report) -> "str | None":
    """The skip message of ``report`` when it skipped for a missing (or too old) package of the
    test extra, else None."""
    if not report.skipped or not isinstance(report.longrepr, tuple) or hasattr(report, "wasxfail"):
        return None
    message = str(report.longrepr[2])
    match = _IMPORT_SKIP.search(message)
    if match is None:
        return None
    name = (match.group(1) or match.group(2)).split(".")[0]
    return message if name in TEST_EXTRA_MODULES else None


def _fail_instead(report, message: str) -> None:
    report.outcome = "failed"
    report.longrepr = (f"{message}\nThis package belongs to the test extra, which the tests require "
                       f'(pip install -e ".[test]", or make test): a skip here would hide an untested claim.')


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    message = _missing_test_dependency(report)
    if message is not None:
        _fail_instead(report, message)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    message = _missing_test_dependency(report)
    if message is not None:
        _fail_instead(report, message)
    return report


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny tensors on one thread: faster, and immune to a busy machine's contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the plotting functions of ``convlstm.plots`` make, in order."""
    from convlstm import plots

    made = []
    real = plots._figure
    monkeypatch.setattr(plots, "_figure", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    return made
