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
