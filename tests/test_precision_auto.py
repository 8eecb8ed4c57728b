"""precision="auto": the rule (by the CPU's bfloat16 flags, which are faked here both ways) and what
fit makes of it (the log, config.yaml, a resumed run keeping its own)."""
import numpy as np
import pytest

import convlstm.training.precision as precision_mod
from convlstm.training import fit, load_config
from convlstm.training.config import FitConfig
from convlstm.training.precision import resolve_precision

from test_training import make_series, tiny_config


@pytest.mark.parametrize("flags, expected", [
    ([], "32"), (["avx512_bf16"], "bf16-mixed"), (["amx_bf16", "amx_tile"], "bf16-mixed"),
    (["amx_tile"], "32"),     # tiles alone do not say bfloat16
])
def test_auto_follows_the_cpus_bfloat16_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: list(flags))
    got, why = resolve_precision("auto", "cpu")
    assert got == expected
    assert ("auto: this CPU has" in why) and (("no avx512_bf16" in why) == (expected == "32"))


def test_named_precisions_pass_and_other_accelerators_take_float32(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    for name in ("32", "64", "16-mixed", "bf16-mixed"):
        assert resolve_precision(name, "cpu")[0] == name
    assert resolve_precision("auto", "mps")[0] == "32"
    assert FitConfig().precision == "auto"
    with pytest.raises(ValueError, match="precision"):
        FitConfig(precision="fp8")


def test_fit_writes_the_precision_auto_chose_and_a_resume_keeps_it(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "grid.npy", make_series())
    run = tmp_path / "run"
    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    fit(tiny_config(tmp_path, run_dir=str(run), max_epochs=1, evaluate=False, precision="auto"))
    assert "precision bf16-mixed (auto: this CPU has avx512_bf16" in capsys.readouterr().out
    assert load_config(run / "config.yaml").precision == "bf16-mixed"
    # the same run resumed where auto would now choose float32: it goes on in its own precision
    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: [])
    fit(tiny_config(tmp_path, run_dir=str(run), max_epochs=2, evaluate=False, precision="auto", resume=True))
    assert "precision bf16-mixed (the resumed run's own)" in capsys.readouterr().out
    assert load_config(run / "config.yaml").precision == "bf16-mixed"
    # a new run there takes float32
    fit(tiny_config(tmp_path, run_dir=str(tmp_path / "other"), max_epochs=1, evaluate=False, precision="auto"))
    assert load_config(tmp_path / "other" / "config.yaml").precision == "32"
