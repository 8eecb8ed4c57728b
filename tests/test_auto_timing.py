"""``implementation="auto"``'s measured choice (``convlstm._auto_timing``): where the rule picks a
fast-transform path, the first call of a shape times one step's convolution both ways and runs the
faster one; the policy (``set_auto_policy``, ``CONVLSTM_AUTO``, deterministic algorithms) can keep
the rule alone.

The rest of the suite runs with ``CONVLSTM_AUTO=rule`` (``conftest.py``); here the policy is set
per test. The truth for the outputs is the ``"reference"`` path.
"""
import pytest
import torch

import convlstm
from convlstm import _auto_timing, _paths
from convlstm._errors import ParameterError


@pytest.fixture
def measure(monkeypatch):
    """The measured policy, with no timings remembered before or after the test."""
    monkeypatch.setattr(_auto_timing, "_policy", "measure")
    _auto_timing.clear_auto_timings()
    yield
    _auto_timing.clear_auto_timings()


def _layers(kernel=5, filters=4, in_channels=3):
    torch.manual_seed(0)
    auto = convlstm.ConvLSTM2D(filters, kernel, padding="same", return_sequences=True, in_channels=in_channels)
    ref = convlstm.ConvLSTM2D(filters, kernel, padding="same", return_sequences=True, in_channels=in_channels,
                              implementation="reference")
    ref.load_state_dict(auto.state_dict())
    return auto, ref


def _fake_timings(monkeypatch, seconds):
    """Replace the clock-based measurement by fixed ``seconds`` per path; returns the call log."""
    calls = []

    def fake(batch, channels, filters, spatial, kernel, candidate, device):
        calls.append((batch, channels, filters, spatial, kernel, candidate))
        return {"concat": seconds["concat"], candidate: seconds[candidate]}

    monkeypatch.setattr(_auto_timing, "_step_timings", fake)
    return calls


@pytest.mark.parametrize("faster", ["fft", "concat"])
def test_auto_runs_the_faster_of_the_measured_paths_once_per_shape(monkeypatch, measure, faster):
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)  # the rule sends 5x5 on small frames to "fft"
    seconds = {"fft": 1.0, "concat": 2.0} if faster == "fft" else {"fft": 2.0, "concat": 1.0}
    calls = _fake_timings(monkeypatch, seconds)
    auto, ref = _layers()
    x = torch.randn(2, 3, 6, 5, 3)
    for _ in range(2):
        out = auto(x)
        assert auto.last_path == faster
        assert auto.last_path_detail["auto_timings"] == seconds
        assert auto.last_path_detail["substituted"] is None
    assert calls == [(2, 3, 4, (6, 5), (5, 5), "fft")]  # measured on the first call only
    torch.testing.assert_close(out, ref(x), rtol=0, atol=1e-5)
    auto(torch.randn(3, 3, 6, 5, 3))  # another batch size is another shape
    assert len(calls) == 2


def test_the_measurement_times_both_ways_and_the_choice_is_the_faster(monkeypatch, measure):
    """Real clocks, a small layer: both timings are positive and the path that ran is their argmin,
    with outputs equal to the reference's."""
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)
    auto, ref = _layers(filters=6)
    x = torch.randn(2, 3, 9, 7, 3)
    with torch.no_grad():
        out = auto(x)
    timings = auto.last_path_detail["auto_timings"]
    assert set(timings) == {"concat", "fft"} and all(t > 0 for t in timings.values())
    assert auto.last_path == min(timings, key=timings.get)
    torch.testing.assert_close(out, ref(x).detach(), rtol=0, atol=1e-5)


@pytest.mark.skipif(not _paths._NNPACK, reason="this torch has no NNPACK, so the rule never picks it")
def test_nnpack_candidate_is_timed_on_large_frames(monkeypatch, measure):
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)
    auto, ref = _layers(filters=2, in_channels=1)
    x = torch.randn(1, 2, 64, 64, 1)
    with torch.no_grad():
        out = auto(x)
    timings = auto.last_path_detail["auto_timings"]
    assert set(timings) == {"concat", "nnpack"}
    assert auto.last_path == min(timings, key=timings.get)
    torch.testing.assert_close(out, ref(x).detach(), rtol=0, atol=1e-4)


def test_rule_policy_measures_nothing(monkeypatch, measure):
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)
    calls = _fake_timings(monkeypatch, {"fft": 2.0, "concat": 1.0})
    auto, _ = _layers()
    x = torch.randn(2, 3, 6, 5, 3)
    assert convlstm.set_auto_policy("rule") == "measure"
    auto(x)
    assert auto.last_path == "fft" and auto.last_path_detail["auto_timings"] is None and calls == []
    convlstm.set_auto_policy("measure")
    auto(x)
    assert auto.last_path == "concat" and len(calls) == 1


def test_deterministic_algorithms_keep_the_rule(monkeypatch, measure):
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)
    calls = _fake_timings(monkeypatch, {"fft": 2.0, "concat": 1.0})
    auto, _ = _layers()
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert convlstm.auto_policy() == "rule"
        auto(torch.randn(2, 3, 6, 5, 3))
    finally:
        torch.use_deterministic_algorithms(before)
    assert auto.last_path == "fft" and calls == []


def test_policy_from_the_environment(monkeypatch):
    monkeypatch.setattr(_auto_timing, "_policy", None)
    monkeypatch.setenv("CONVLSTM_AUTO", "rule")
    assert convlstm.auto_policy() == "rule"
    monkeypatch.setenv("CONVLSTM_AUTO", " Measure ")
    assert convlstm.auto_policy() == "measure"
    monkeypatch.delenv("CONVLSTM_AUTO")
    assert convlstm.auto_policy() == "measure"  # the default
    monkeypatch.setenv("CONVLSTM_AUTO", "fastest")
    with pytest.raises(ParameterError, match=r"CONVLSTM_AUTO must be one of 'measure', 'rule'; got 'fastest'"):
        convlstm.auto_policy()


def test_bad_policy_is_refused_naming_it(monkeypatch):
    monkeypatch.setattr(_auto_timing, "_policy", None)
    with pytest.raises(ParameterError, match=r"policy must be one of 'measure', 'rule'; got 'fast'") as err:
        convlstm.set_auto_policy("fast")
    assert err.value.parameter == "policy"
    assert _auto_timing._policy is None  # nothing changed


def test_timing_steps_out_of_dispatch_modes(monkeypatch, measure):
    """``convlstm fit``'s memory guard first runs a step on fake tensors, where a convolution takes
    no time: the measurement steps out of the fake mode, so that what it remembers for the real run
    is a timing of real convolutions. Checked without a clock: the timer is replaced by one that
    calls the timed function once and looks at it (a real tensor comes out, no dispatch mode is
    active; a fake one would "take no time"), and the real call after the fake one measures
    nothing again and runs on what the fake one remembered."""
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    timed = []

    def inspecting_timer(run):  # in place of _fastest
        out = run()
        timed.append((isinstance(out, torch.Tensor), isinstance(out, FakeTensor),
                      len(_get_current_dispatch_mode_stack())))
        return 0.0 if isinstance(out, FakeTensor) else 1.0

    monkeypatch.setattr(_auto_timing, "_fastest", inspecting_timer)
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)  # the rule sends the layer to "fft"
    auto, ref = _layers()
    x = torch.randn(2, 3, 3, 6, 5)  # (B, T, C, H, W), as the paths see it
    with FakeTensorMode() as mode:   # what the layer's call under the memory guard asks
        path, timings = _auto_timing.measured_choice(auto, mode.from_tensor(x), (6, 5), "fft")
    assert timed == [(True, False, 0), (True, False, 0)], timed  # both ways, on real tensors, outside the mode
    assert timings == {"concat": 1.0, "fft": 1.0}
    with torch.no_grad():  # the real call: channels last, as the layer takes it
        out = auto(x.permute(0, 1, 3, 4, 2))
    assert len(timed) == 2, timed  # remembered from the call under the fake mode
    assert auto.last_path_detail["auto_timings"] == {"concat": 1.0, "fft": 1.0}
    torch.testing.assert_close(out, ref(x.permute(0, 1, 3, 4, 2)).detach(), rtol=0, atol=1e-5)
