"""Bundled MNIST digits, the Moving MNIST generator and the mnist_test_seq.npy reader."""
import gzip
import struct

import numpy as np
import pytest

from convlstm.data import load_mnist_digits, load_mnist_test_seq, moving_mnist, read_idx


# ------------------------------------------------------------------------------ MNIST digits
def test_bundled_digits_counts_and_labels():
    images, labels = load_mnist_digits()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    # the MNIST test set's class counts (LeCun et al.), and its first labels
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert images.max() == 255 and images[:, 0, 0].max() == 0  # dark border
    images[0] = 0  # copies: changing them does not change the next call
    assert load_mnist_digits()[0][0].max() == 255


def test_bundled_files_are_package_data():
    from importlib import resources

    assets = resources.files("convlstm") / "assets"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "MNIST_LICENSE.txt"):
        assert (assets / name).is_file()
    assert "CC BY-SA 3.0" in (assets / "MNIST_LICENSE.txt").read_text()


def idx_bytes(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


def test_read_idx_written_by_hand(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(2051, (2, 3, 4), data.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx", expected_magic=2051), data)
    with gzip.open(tmp_path / "l.gz", "wb") as fh:
        fh.write(idx_bytes(2049, (3,), bytes([7, 0, 9])))
    assert read_idx(tmp_path / "l.gz", expected_magic=2049).tolist() == [7, 0, 9]


def test_read_idx_corrupt_files(tmp_path):
    (tmp_path / "short.idx").write_bytes(idx_bytes(2051, (2, 3, 4), bytes(23)))
    with pytest.raises(ValueError, match=r"is corrupt: the header announces shape \(2, 3, 4\) "
                                         r"\(24 bytes of data\) but the file holds 23"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "labels.idx").write_bytes(idx_bytes(2049, (3,), bytes(3)))
    with pytest.raises(ValueError, match=r"has IDX magic number 2049, expected 2051"):
        read_idx(tmp_path / "labels.idx", expected_magic=2051)
    (tmp_path / "junk.idx").write_bytes(b"\x12\x34\x56\x78rest")
    with pytest.raises(ValueError, match=r"has an invalid IDX magic number"):
        read_idx(tmp_path / "junk.idx")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(ValueError, match=r"is not a readable \(gzip\) IDX file"):
        read_idx(tmp_path / "bad.gz")


# ------------------------------------------------------------------------------- Moving MNIST
def test_shape_dtype_range_and_determinism():
    a = moving_mnist(6, seq_len=10, seed=3)
    assert a.shape == (6, 10, 64, 64) and a.dtype == np.uint8
    assert a.max() > 200 and a.min() == 0
    np.testing.assert_array_equal(a, moving_mnist(6, seq_len=10, seed=3))
    assert not np.array_equal(a, moving_mnist(6, seq_len=10, seed=4))
    # frames change over time: the digits move
    assert (a[:, 1:] != a[:, :-1]).any(axis=(2, 3)).all()


def test_digits_stay_wholly_in_frame():
    """One digit per sequence: if it never leaves the frame, every frame's total ink equals the
    digit's own ink (nothing clipped)."""
    images, _ = load_mnist_digits()
    ink = set(images.reshape(10000, -1).sum(axis=1, dtype=np.int64).tolist())
    seqs = moving_mnist(20, seq_len=40, num_digits=1, speed=(6.0, 9.0), seed=1)
    per_frame = seqs.reshape(20, 40, -1).sum(axis=2, dtype=np.int64)
    assert (per_frame == per_frame[:, :1]).all()
    assert set(per_frame[:, 0].tolist()) <= ink


def triangle(u, limit):
    """Closed-form elastic bounce in [0, limit]: the triangle wave of the unfolded position."""
    m = np.mod(u, 2 * limit)
    return limit - np.abs(limit - m)


def test_positions_follow_elastic_bounces():
    L = 32 - 8
    speed = 3.0
    frames, pos = moving_mnist(50, seq_len=60, image_size=32, digit_size=8, num_digits=1,
                               speed=speed, seed=7, return_positions=True)
    assert pos.shape == (50, 60, 1, 2)
    assert pos.min() >= 0 and pos.max() <= L
    assert pos.min() < 1 and pos.max() > L - 1  # they do reach the walls
    p0, p1 = pos[:, 0, 0], pos[:, 1, 0]
    ok = ((p0 > speed) & (p0 < L - speed)).all(axis=1)  # no bounce in the first step
    assert ok.sum() > 10
    v = p1[ok] - p0[ok]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), speed)
    t = np.arange(60)[None, :, None]
    expected = triangle(p0[ok][:, None, :] + t * v[:, None, :], L)
    np.testing.assert_allclose(pos[ok, :, 0], expected, atol=1e-9)


def test_digit_drawn_at_rounded_position():
    square = np.full((1, 5, 5), 200, dtype=np.uint8)
    frames, pos = moving_mnist(3, seq_len=15, image_size=20, digit_size=5, num_digits=1,
                               digits=square, speed=2.5, seed=0, return_positions=True)
    for n in range(3):
        for t in range(15):
            r, c = np.rint(pos[n, t, 0]).astype(int)
            expected = np.zeros((20, 20), dtype=np.uint8)
            expected[r:r + 5, c:c + 5] = 200
            np.testing.assert_array_equal(frames[n, t], expected)


def test_two_digits_combine_with_max():
    a = np.zeros((2, 4, 4), dtype=np.uint8)
    a[0, :, :2] = 100  # left half
    a[1, :2, :] = 150  # top half
    frames = moving_mnist(5, seq_len=3, image_size=4, digit_size=4, num_digits=2, digits=a,
                          seed=2)
    # both digits fill the 4 x 4 frame exactly: each frame is the max of the digits drawn
    combos = {np.maximum(a[i], a[j]).tobytes() for i in range(2) for j in range(2)}
    assert all(f.tobytes() in combos for f in frames.reshape(-1, 4, 4))


def test_small_digits_for_small_frames():
    seqs = moving_mnist(4, seq_len=8, image_size=32, digit_size=14, seed=0)
    assert seqs.shape == (4, 8, 32, 32)
    assert seqs.max() > 150  # area averaging keeps strokes bright


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(digit_size=70), ValueError, r"digit_size must be <= image_size = 64 .* got 70"),
    (dict(num_digits=0), ValueError, r"num_digits must be an integer >= 1, got 0"),
    (dict(seq_len=2.0), TypeError, r"seq_len must be an integer >= 1, got 2.0"),
    (dict(speed=(5.0, 2.0)), ValueError, r"speed must be >= 0 .* got \(5.0, 2.0\)"),
    (dict(speed=-1), ValueError, r"speed must be >= 0 .* got -1"),
    (dict(speed="fast"), TypeError, r"speed must be a number or a pair \(low, high\), got 'fast'"),
    (dict(digits="train"), ValueError, r"digits must be 'test' .* got 'train'"),
    (dict(digits=np.zeros((3, 4, 5), np.uint8)), ValueError, r"square images .* got shape \(3, 4, 5\)"),
    (dict(digits=np.zeros((3, 4, 4))), TypeError, r"digits must have dtype uint8 .* got float64"),
    (dict(seed=-1), ValueError, r"seed must be an integer >= 0, got -1"),
])
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        moving_mnist(2, **kwargs)


# ---------------------------------------------------------------------------- mnist_test_seq
def test_load_mnist_test_seq_transposes(tmp_path):
    t, n = 20, 3
    stored = np.zeros((t, n, 64, 64), dtype=np.uint8)
    for ti in range(t):
        for ni in range(n):
            stored[ti, ni, 0, 0] = ti
            stored[ti, ni, 0, 1] = ni
    np.save(tmp_path / "mnist_test_seq.npy", stored)
    seqs = load_mnist_test_seq(tmp_path / "mnist_test_seq.npy")
    assert seqs.shape == (n, t, 64, 64) and seqs.dtype == np.uint8
    assert seqs[2, 5, 0, 0] == 5 and seqs[2, 5, 0, 1] == 2
    assert seqs[:, :, 0, 0].tolist() == [list(range(t))] * n


def test_load_mnist_test_seq_errors(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((20, 3, 64, 64), dtype=np.float32))
    with pytest.raises(ValueError, match=r"must hold uint8 frames like mnist_test_seq.npy, got "
                                         r"dtype float32"):
        load_mnist_test_seq(tmp_path / "f.npy")
    np.save(tmp_path / "s.npy", np.zeros((20, 64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"must hold \(time, sequences, height, width\) frames .* "
                                         r"got shape \(20, 64, 64\)"):
        load_mnist_test_seq(tmp_path / "s.npy")
    with pytest.raises(FileNotFoundError, match=r"no such file"):
        load_mnist_test_seq(tmp_path / "missing.npy")
