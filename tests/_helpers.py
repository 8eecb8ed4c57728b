"""Helpers shared by several test modules."""
import contextlib
import io


def run_cli(*argv):
    """``convlstm.cli.main(argv)`` -> (exit status, stdout, stderr), argparse's ``SystemExit``
    included; the output is captured by redirection, so it needs no pytest fixture."""
    from convlstm import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def run_cli_captured(capsys, *argv):
    """The same through pytest's ``capsys`` (which also sees what loggers made before the call
    write to the standard streams)."""
    from convlstm import cli

    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def grad_fn_names(tensor):
    """The class names of every autograd node that ``tensor`` was computed through."""
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


def write_odim(path, codes, quantity="DBZH", gain=0.5, offset=-32.0, nodata=255.0, undetect=0.0):
    """An ODIM HDF5 composite: ``/what``, ``/where`` (projection and corners), and
    ``/dataset1/data1/{data, what}`` with the quantity, gain, offset, nodata and undetect codes."""
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        what = f.create_group("what")
        what.attrs["object"] = np.bytes_("COMP")
        what.attrs["date"] = np.bytes_("20200101")
        where = f.create_group("where")
        where.attrs["projdef"] = np.bytes_("+proj=laea +lat_0=55 +lon_0=10 +ellps=WGS84")
        for key, value in dict(LL_lat=50.0, LL_lon=5.0, UR_lat=53.0, UR_lon=10.0, xscale=1000.0,
                               yscale=1000.0, xsize=codes.shape[1], ysize=codes.shape[0]).items():
            where.attrs[key] = value
        data = f.create_group("dataset1/data1")
        data.create_dataset("data", data=codes)
        dwhat = data.create_group("what")
        dwhat.attrs["quantity"] = np.bytes_(quantity)  # bytes, as ODIM files hold them
        for key, value in dict(gain=gain, offset=offset, nodata=nodata, undetect=undetect).items():
            dwhat.attrs[key] = value
