"""Hostile and broken files: each is refused with a clear KerasFileError, and nothing is executed."""
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import convlstm.keras as ck

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
K3 = FIXTURES / "k3_bidir_states.keras"
K2 = FIXTURES / "k2_convlstm_options.h5"


def rewrite_keras(src: Path, dst: Path, **replace):
    """Copy a .keras archive, replacing members (name -> bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.pop(info.filename, zin.read(info.filename)))
        for name, data in replace.items():
            zout.writestr(name, data)
    return dst


def k3_config():
    with zipfile.ZipFile(K3) as z:
        return json.loads(z.read("config.json"))


def test_lambda_layer_is_refused_naming_it(tmp_path):
    cfg = k3_config()
    layer = cfg["config"]["layers"][3]
    layer["class_name"] = "Lambda"
    layer["config"]["function"] = {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA", "defaults": None}}
    path = rewrite_keras(K3, tmp_path / "lambda.keras", **{"config.json": json.dumps(cfg).encode()})
    with pytest.raises(ck.KerasFileError) as err:
        ck.load_model(path)
    msg = str(err.value)
    assert layer["name"] in msg and "'Lambda'" in msg and "ConvLSTM2D" in msg and "never run" in msg


def test_unknown_class_is_refused_listing_supported(tmp_path):
    with h5py.File(K2) as f:
        cfg = json.loads(f.attrs["model_config"])
    cfg["config"]["layers"][2]["class_name"] = "MyCustomLayer"
    bad = tmp_path / "custom.h5"
    shutil.copy(K2, bad)
    with h5py.File(bad, "r+") as f:
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(ck.KerasFileError, match=r"'MyCustomLayer'.*Supported layers: .*BatchNormalization"):
        ck.load_model(bad)


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil", "a/../../evil", "C:\\evil"])
def test_unsafe_member_names_are_refused(tmp_path, member):
    path = rewrite_keras(K3, tmp_path / "trav.keras", **{member: b"x"})
    with pytest.raises(ck.KerasFileError, match="unsafe path"):
        ck.load_model(path)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_zip_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", b"{}")
        z.writestr("metadata.json", b"{}")
        z.writestr("model.weights.h5", b"\0" * (40 * 2 ** 20))  # 40 MiB that deflate to ~40 KiB
    with pytest.raises(ck.KerasFileError, match="zip bomb"):
        ck.load_model(path)


def test_declared_size_beyond_the_archive_is_refused(tmp_path):
    path = tmp_path / "forged.keras"
    shutil.copy(K3, path)
    data = bytearray(path.read_bytes())
    # Forge the central directory's uncompressed size of the first member (offset 24 in its entry).
    cd = data.rfind(b"PK\x01\x02", 0, len(data))
    first = data.find(b"PK\x01\x02")
    data[first + 24:first + 28] = (2 ** 32 - 2).to_bytes(4, "little")
    data[first + 20:first + 24] = (2 ** 32 - 2).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert cd >= first
    with pytest.raises(ck.KerasFileError, match=r"declares 4294967294 bytes .* refusing it as a zip bomb or corrupt"):
        ck.load_model(path)


@pytest.mark.parametrize("source,name", [(K3, "cut.keras"), (K2, "cut.h5")], ids=["keras", "h5"])
def test_truncated_file(tmp_path, source, name):
    data = source.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.KerasFileError, match="truncated"):
        ck.load_model(path)


def _replace_dataset(path: Path, dtype=np.float32, shape=None):
    with h5py.File(path, "r+") as f:
        g = f["model_weights"]["conv_lst_m2d_1"]
        name = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]][0]
        old = g[name][()]
        del g[name]
        g.create_dataset(name, data=np.zeros(shape or old.shape, dtype=dtype))


def test_h5_weight_shape_mismatch(tmp_path):
    bad = tmp_path / "shape.h5"
    shutil.copy(K2, bad)
    _replace_dataset(bad, shape=(3, 3, 2, 8))
    with pytest.raises(ck.KerasFileError, match=r"conv_lst_m2d_1.*kernel.*\(3, 3, 2, 8\).*\(3, 3, 2, 12\)"):
        ck.load_model(bad)


def test_h5_weight_dtype_mismatch(tmp_path):
    bad = tmp_path / "dtype.h5"
    shutil.copy(K2, bad)
    _replace_dataset(bad, dtype=np.int32)
    with pytest.raises(ck.KerasFileError, match="dtype int32"):
        ck.load_model(bad)


@pytest.mark.parametrize("text,match", [
    ("{not json", "malformed JSON"),
    ("[" * 100000 + "]" * 100000, "nests deeper"),
    ('{"class_name": "Sequential", "config": {"layers": NaN}}', "not valid JSON"),
    ('{"class_name": "Sequential", "config": {"layers": []}}', "no layers"),
    ('["a list"]', "class_name"),
])
def test_malformed_or_deep_config(tmp_path, text, match):
    bad = tmp_path / "cfg.h5"
    shutil.copy(K2, bad)
    with h5py.File(bad, "r+") as f:
        f.attrs["model_config"] = text
    with pytest.raises(ck.KerasFileError, match=match):
        ck.load_model(bad)
    path = rewrite_keras(K3, tmp_path / "cfg.keras", **{"config.json": text.encode()})
    with pytest.raises(ck.KerasFileError, match=match):
        ck.load_model(path)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"this is not HDF5")
    with pytest.raises(ck.KerasFileError, match="HDF5"):
        ck.load_model(path)
    with pytest.raises(ck.KerasFileError, match="weights-only"):
        ck.load_model(FIXTURES / "k2_weights_only.h5")


def test_no_pickle_eval_or_tensorflow_at_run_time():
    src = Path(ck.__file__).parent
    text = "\n".join(p.read_text() for p in src.glob("*.py"))
    for word in ("import pickle", "pickle.load", "marshal", "torch.load("):
        assert word not in text, word
    assert not re.search(r"(?<![.\w])(eval|exec)\(", text)
    code = ("import sys, convlstm.keras as ck; m = ck.load_model(sys.argv[1]); "
            "bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code, str(K3)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_external_links_are_not_followed(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.zeros((3, 3, 2, 12), np.float32))
    bad = tmp_path / "link.h5"
    shutil.copy(K2, bad)
    with h5py.File(bad, "r+") as f:
        g = f["model_weights"]["conv_lst_m2d_1"]
        name = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]][0]
        del g[name]
        g[name] = h5py.ExternalLink(str(other), "/secret")
    with pytest.raises(ck.KerasFileError, match="ExternalLink"):
        ck.load_model(bad)
