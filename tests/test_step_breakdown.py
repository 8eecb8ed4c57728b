"""The method of ``benchmarks/step_breakdown.py`` on tiny shapes: the timed parts cover the measured
step (and fit), every part is there, and the timers change nothing the model computes. No speed
is claimed here."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sb():
    spec = importlib.util.spec_from_file_location("step_breakdown", ROOT / "benchmarks" / "step_breakdown.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_breakdown"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("step_breakdown", None)


def _tiny(sb, name="bikenyc"):
    return sb.make_shape(name, scale_down=4)


def test_step_parts_add_up_to_the_measured_step(sb):
    result = sb.step_breakdown(_tiny(sb), steps=3, warmup=1)
    rows = {r["component"]: r for r in result["rows"]}
    expected = set(sb.STEP_PHASES) | set(sb.FORWARD_PARTS) | {"forward, rest", "unaccounted"}
    assert set(rows) == expected
    total = result["total_ms"]   # read by the step's own clock, apart from the phases'
    phases = sum(rows[p]["ms"] for p in sb.STEP_PHASES)
    assert phases <= total * 1.0001
    assert total - phases <= 0.15 * total + 1.0, (phases, total)   # only the loop's own Python is outside
    inner = sum(rows[p]["ms"] for p in sb.FORWARD_PARTS)
    assert inner <= rows["forward"]["ms"] * 1.0001
    assert rows["forward, rest"]["ms"] == pytest.approx(rows["forward"]["ms"] - inner)
    assert sum(r["share"] for r in result["rows"] if r["level"] == 0) == pytest.approx(1.0)
    for part in sb.FORWARD_PARTS:
        assert rows[part]["ms"] > 0, part
    calls = result["calls_per_step"]
    k = 3   # output steps: the encoder, the ConvLSTM and the decoder run once per lead time (the first with the inputs)
    assert calls["encoder"] == k and calls["ConvLSTM"] == k and calls["decoder"] == k
    assert calls["block matching"] == 1 and calls["forward"] == 1


def test_timers_change_nothing_and_come_off(sb):
    from convlstm.models import warp as warp_module

    shape = _tiny(sb)
    t = sb.build_trainee(shape, torch.device("cpu"))
    t.model.eval()
    x = torch.rand(2, shape.input_steps, shape.rows, shape.cols, shape.channels,
                   generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = t.model(x)
        original_warp = warp_module.warp_frame
        clock = sb.Clock(torch.device("cpu"))
        timers = sb.ModelTimers(t.model, clock)
        timed = t.model(x)
        timers.remove()
        after = t.model(x)
    assert torch.equal(before, timed) and torch.equal(before, after)
    assert set(clock.totals) == set(sb.FORWARD_PARTS)
    assert warp_module.warp_frame is original_warp
    assert not {"_encode", "_observed_motion", "_rnn"} & set(vars(t.model))
    assert not t.model.decoder._forward_hooks and not t.model.decoder._forward_pre_hooks


def test_clock_counts_a_nested_span_once(sb):
    clock = sb.Clock(torch.device("cpu"))
    with clock.span("a"):
        with clock.span("a"):
            pass
    assert clock.calls["a"] == 1


def test_fit_phases_add_up_to_the_measured_fit(sb):
    shape = _tiny(sb, "mnist")
    result = sb.fit_breakdown(shape, epochs=1, limit_train_batches=3, count_steps=1)
    rows = {r["component"]: r for r in result["rows"]}
    for name in ("data setup", "memory probe", "training steps", "data loading (training)",
                 "validation (per epoch, summed)", "final evaluation", "test evaluation", "pictures"):
        assert name in rows, name
    assert result["train_batches"] == 3
    top = sum(r["s"] for r in result["rows"] if r["level"] == 0 and not r["component"].startswith("rest"))
    rest = rows["rest (Lightning's setup and loop, outside the above)"]["s"]
    assert top + rest == pytest.approx(result["total_s"])
    assert -1e-6 <= rest <= 0.5 * result["total_s"], (rest, result["total_s"])
    assert rows["test evaluation"]["s"] <= rows["final evaluation"]["s"]
    assert result["transfers"]["steps"] == 1
    assert result["transfers"]["per_step"]["htod"] == 0   # a CPU run copies nothing to a device
