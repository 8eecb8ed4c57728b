"""Fuzzing the file readers with seeded byte mutations of real files (see ``tests/_fuzz.py``): every
mutated Keras model, weights file, grid file and YAML config is loaded, or refused with the
library's own error naming the file; never another exception, a crash, a hang or a stray write.

CI runs ``CONVLSTM_FUZZ_CASES`` cases per target (default 40: 440 cases, about 15 s); the long run
is ``tools/fuzz_loaders.py``. Below it, the cases the fuzzing found, kept as regression tests.
"""
import os
import struct
import zipfile

import numpy as np
import pytest

import _fuzz
import convlstm.keras as ck
from convlstm.data import GridFileError, load_grid

CASES_PER_TARGET = int(os.environ.get("CONVLSTM_FUZZ_CASES", "40"))


def test_mutated_files_load_or_are_refused_clearly(tmp_path):
    cases = [(target, seed) for seed in range(CASES_PER_TARGET) for target in _fuzz.TARGETS]
    results = _fuzz.run_campaign(cases, tmp_path, case_timeout=60)
    assert len(results) == len(cases)
    bad = [r for r in results if r["outcome"] not in ("loaded", "refused")]
    assert not bad, "\n".join(f"{r['target']} seed {r['seed']}: {r['outcome']}: {r['detail']}" for r in bad[:20])
    counts = _fuzz.summary(results)
    for target in _fuzz.TARGETS:  # the mutations reach every reader's error paths
        assert counts[target].get("refused", 0) > 0, (target, counts[target])


# ------------------------------------------------------------ found by the fuzzing, kept as regressions
@pytest.fixture(scope="module")
def table():
    return _fuzz.loaders()


# Keras fixtures mutated deterministically: h5py's KeyError / RuntimeError escaped from damaged
# object headers, B-trees and link tables; an archive's config error did not name the file.
@pytest.mark.parametrize("target,seed", [("keras_h5_weights", 0), ("keras_h5_weights", 8),
                                         ("keras_h5_weights", 12), ("keras3_weights", 2), ("keras3_weights", 3),
                                         ("keras3_weights", 10), ("keras_archive_json", 10)])
def test_damaged_keras_files_found_by_fuzzing(tmp_path, table, target, seed):
    path = tmp_path / f"case{_fuzz.TARGETS[target][1]}"
    path.write_bytes(_fuzz.make_case(target, seed, tmp_path))
    with pytest.raises(ck.KerasFileError, match=str(path).replace(".", r"\.")):
        table[target](path)


GRID = np.arange(2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)


def _npy(path):
    np.save(path, GRID)
    return path


def _truncated_npy(path):
    data = _npy(path).read_bytes()
    path.write_bytes(data[:-8])  # numpy's memmap: "mmap length is greater than file size"


def _bad_npy_header(path):
    data = bytearray(_npy(path).read_bytes())
    data[data.index(b"(")] = ord("[")  # numpy: "Cannot parse header"
    path.write_bytes(bytes(data))


def _object_npy(path):
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _not_a_zip(path):
    path.write_bytes(b"PK\x03\x04 not really a zip")


def _bad_crc_npz(path):
    np.savez_compressed(path, data=GRID)
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("data.npy").header_offset
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[offset + 26:offset + 30])  # the local header's
    data[offset + 30 + name_len + extra_len + 5] ^= 0xFF  # a byte of the compressed data
    path.write_bytes(bytes(data))


def _garbage_hdf5(path):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=GRID)
    path.write_bytes(path.read_bytes()[:600])  # h5py: "truncated file"


def _truncated_netcdf3(path):
    from scipy.io import netcdf_file

    with netcdf_file(path, "w") as f:
        for name, size in zip("tyxc", GRID.shape):
            f.createDimension(name, size)
        f.createVariable("data", "f4", tuple("tyxc"))[:] = GRID
    path.write_bytes(path.read_bytes()[:-20])  # scipy: "buffer size must be a multiple of element size"


@pytest.mark.parametrize("make,suffix,key,reason", [
    (_truncated_npy, ".npy", None, "mmap length"),
    (_bad_npy_header, ".npy", None, "header"),
    (_object_npy, ".npy", None, "Python objects"),  # memory-mapped (the default); in memory: never unpickled
    (_not_a_zip, ".npz", "data", "not a zip archive"),
    (_bad_crc_npz, ".npz", "data", ""),
    (_garbage_hdf5, ".h5", "data", ""),
    (_truncated_netcdf3, ".nc", "data", ""),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_damaged_grid_files_give_a_grid_file_error(tmp_path, make, suffix, key, reason):
    """Before: numpy's ValueError, zipfile.BadZipFile, h5py's OSError, scipy's ValueError escaped
    without naming the file."""
    path = tmp_path / f"grid{suffix}"
    make(path)
    with pytest.raises(GridFileError, match=f"{path}(: cannot be read as | is not | holds ).*{reason}"):
        grid = load_grid(path, key=key)
        np.asarray(grid[:])


def test_config_that_is_not_utf8_names_the_file(tmp_path):
    from convlstm.training import load_config

    path = tmp_path / "c.yaml"
    path.write_bytes(b"lr: 0.01\nmodel: \xf4\x80 bad\n")  # before: UnicodeDecodeError
    with pytest.raises(ValueError, match=r"c\.yaml' is not UTF-8 text"):
        load_config(path)


def test_an_object_array_read_into_memory_is_never_unpickled(tmp_path):
    path = tmp_path / "objects.npy"
    _object_npy(path)
    with pytest.raises(GridFileError, match=r"objects\.npy[: ].*never unpickled"):
        load_grid(path, mmap=False)
