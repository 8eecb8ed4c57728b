"""Data for forecasting with ConvLSTM: readers for grid files (numpy, HDF5 and netCDF files; radar
composites through pysteps's importers; netCDF, Zarr and GRIB through xarray), sliding windows
and a lazy window dataset, chronological splits with no leakage, multi-scale (closeness, period,
trend) samples and calendar features from time stamps, per-channel scalers fitted on the training
part, NaN checks, physical units (stored values -> mm/h, dBZ; Z-R relations), and Moving MNIST
built from the MNIST digits bundled with the package.

Several files (a list, a glob pattern, a folder; one file per time step or one per event) are
read as one series cut into gap-free events by :func:`open_archive`.

The canonical layout of a series is a ``(time, rows, cols, channels)`` array; samples are
``(samples, steps, rows, cols, channels)``.
"""
from .finite import FilledSeries, check_finite
from .mnist import load_mnist_digits, load_mnist_test_seq, moving_mnist, read_idx
from .readers import LAYOUTS, GridFileError, LazyGrid, hours_of_day, load_array, load_grid, load_timestamps
from .scalers import (SCALERS, DBScaler, Log1pScaler, MinMaxScaler, NoScaler, Scaler, StandardScaler,
                      make_scaler, scaler_from_state_dict)
from .units import (TRANSFORMS, ConvertedSeries, UnitConversion, accumulation_to_rate, rate_to_accumulation,
                    rate_to_reflectivity, reflectivity_to_rate)
from .windows import (STREAMS, MultiScaleWindowDataset, WindowDataset, chronological_split, multiscale_offsets,
                      multiscale_targets, num_windows, sliding_windows, stacked_lags)
from .calendar import (CALENDAR_FEATURES, calendar_features, decode_cf_times, parse_timestamps, read_holidays,
                       steps_per_day, time_step)
from .coordinates import GridCoordinates, grid_coordinates, read_times
from .archive import READERS, GridArchive, find_events, list_archive_files, open_archive, time_from_file_name
from .windows import check_parts_have_windows, event_ranges, event_split
from .pysteps_reader import PystepsFrames, pysteps_importers
from .xarray_reader import XarrayGrid

__all__ = [
    "load_grid", "load_timestamps", "load_array", "hours_of_day", "LazyGrid", "LAYOUTS", "GridFileError",
    "sliding_windows", "num_windows", "WindowDataset", "chronological_split", "event_split", "event_ranges",
    "check_parts_have_windows",
    "open_archive", "GridArchive", "find_events", "list_archive_files", "time_from_file_name", "READERS",
    "STREAMS", "multiscale_offsets", "multiscale_targets", "MultiScaleWindowDataset", "stacked_lags",
    "CALENDAR_FEATURES", "calendar_features", "parse_timestamps", "read_holidays", "steps_per_day",
    "decode_cf_times", "time_step", "read_times", "grid_coordinates", "GridCoordinates",
    "PystepsFrames", "pysteps_importers", "XarrayGrid",
    "Scaler", "MinMaxScaler", "StandardScaler", "Log1pScaler", "DBScaler", "NoScaler", "make_scaler",
    "scaler_from_state_dict", "SCALERS",
    "UnitConversion", "ConvertedSeries", "TRANSFORMS", "reflectivity_to_rate", "rate_to_reflectivity",
    "accumulation_to_rate", "rate_to_accumulation",
    "check_finite", "FilledSeries",
    "load_mnist_digits", "moving_mnist", "load_mnist_test_seq", "read_idx",
]
