"""check_finite: where the NaNs are, and the fills, against hand-written expectations."""
import numpy as np
import pytest

from convlstm.data import check_finite


def test_finite_series_is_returned_unchanged():
    x = np.ones((4, 2, 2, 1), dtype=np.float32)
    assert check_finite(x) is x
    ints = np.arange(8, dtype=np.int16).reshape(2, 2, 2, 1)
    assert check_finite(ints) is ints


def test_error_says_how_many_and_where():
    x = np.zeros((5, 3, 4, 2))
    x[3, 2, 1, 1] = np.nan  # the first in time order
    x[4, 0, 0, 0] = np.inf
    x[4, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"series has 3 non-finite value\(s\) \(2 NaN, 1 inf\); "
                                         r"the first at time 3, row 2, col 1, channel 1\. Fill "
                                         r"them with check_finite\(series, fill='zero' \| 'ffill' "
                                         r"\| <number>\)"):
        check_finite(x)


def test_error_on_a_memmap_scanned_in_chunks(tmp_path):
    x = np.zeros((50, 2, 2, 1), dtype=np.float32)
    x[41, 1, 0, 0] = -np.inf
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) \(0 NaN, 1 inf\); the first "
                                         r"at time 41, row 1, col 0, channel 0"):
        check_finite(mm)


def test_fill_zero_and_number():
    x = np.array([[1.0, np.nan], [np.inf, 4.0]])  # (T=2, C=2)
    z = check_finite(x, fill="zero")
    assert np.asarray(z).tolist() == [[1.0, 0.0], [0.0, 4.0]]
    assert np.isnan(x[0, 1])  # filled as read: the input is untouched
    assert np.asarray(check_finite(x, fill=-1)).tolist() == [[1.0, -1.0], [-1.0, 4.0]]
    assert np.asarray(check_finite(x, fill=2.5)).tolist() == [[1.0, 2.5], [2.5, 4.0]]


def test_fill_ffill_along_time_per_pixel():
    nan = np.nan
    # (T=5, rows=1, cols=2, C=1): pixel 0 starts with NaN (no past: 0), pixel 1 has a run
    x = np.array([[nan, 1.0], [2.0, nan], [nan, nan], [nan, 7.0], [5.0, -np.inf]])
    x = x[:, None, :, None]
    out = check_finite(x, fill="ffill")[:, 0, :, 0]
    assert out.tolist() == [[0.0, 1.0], [2.0, 1.0], [2.0, 1.0], [2.0, 7.0], [5.0, 7.0]]
    assert np.asarray(check_finite(np.array([np.nan, 3.0, np.nan]), fill="ffill")).tolist() == [0.0, 3.0, 3.0]


@pytest.mark.parametrize("fill, exc", [("mean", ValueError), (np.nan, ValueError),
                                       (True, TypeError), ([0], TypeError)])
def test_bad_fill(fill, exc):
    with pytest.raises(exc, match=r"fill must be None, 'zero', 'ffill' or a finite number, got"):
        check_finite(np.zeros(3), fill=fill)
