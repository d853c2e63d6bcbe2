"""tine's helpers on the Python side: loading the application, describing errors and stacks.

Embedded in the tine binary and imported as the module ``_tine``; applications never see it.
"""

import ast
import difflib
import importlib
import sys
import threading
import traceback


def forget_environ(names):
    """Removes ``names`` from ``os.environ`` and from the ``posix.environ`` it was copied from
    (a worker forked from a master that started Python)."""
    import os
    import posix

    for name in names:
        os.environ.pop(name, None)
        posix.environ.pop(os.fsencode(name), None)


def load(module_name, attr_path, call_args):
    """Imports ``module_name``, follows ``attr_path`` (dotted) and, when ``call_args`` is not
    None, calls the result with those arguments (Python literals only) as a factory."""
    module = importlib.import_module(module_name)
    obj = module
    walked = module_name
    for name in attr_path.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            names = [n for n in dir(obj) if not n.startswith("__")]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise LookupError(f"{walked!r} has no attribute {name!r}{hint}") from None
        walked = f"{walked}.{name}" if walked != module_name else f"{module_name}:{name}"
    if call_args is not None:
        args, kwargs = _literal_call_args(call_args)
        if not callable(obj):
            raise TypeError(f"{walked} is not callable, so it cannot be called as a factory")
        obj = obj(*args, **kwargs)
        walked = f"{walked}({call_args})"
    if not callable(obj):
        raise TypeError(
            f"{walked} is a {type(obj).__name__}, not a WSGI application (a callable)"
        )
    return obj


def _literal_call_args(text):
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"the factory's arguments ({text}) are not valid Python: {err.msg}")
    if not isinstance(call, ast.Call):
        raise ValueError(f"the factory's arguments ({text}) are not an argument list")
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except ValueError:
        raise ValueError(
            f"the factory's arguments ({text}) must be Python literals "
            "(strings, numbers, True/False/None, lists, dicts)"
        ) from None
    if any(k.arg is None for k in call.keywords) or any(
        isinstance(a, ast.Starred) for a in call.args
    ):
        raise ValueError("the factory's arguments cannot use * or **")
    return args, kwargs


def format_exception(exc, tb=None):
    """The traceback of ``exc`` as text, as Python itself prints it, without the frames of
    the import machinery and of this module."""
    summary = traceback.TracebackException(type(exc), exc, tb or exc.__traceback__)
    kept = [
        frame
        for frame in summary.stack
        if not frame.filename.startswith(("<frozen importlib", "tine/"))
    ]
    summary.stack = traceback.StackSummary.from_list(kept)
    return "".join(summary.format()).rstrip()


def stack_of(thread_ident):
    """The Python stack of the thread ``thread_ident``, innermost call last, or None."""
    frame = sys._current_frames().get(thread_ident)
    if frame is None:
        return None
    return "".join(traceback.format_stack(frame)).rstrip()


def other_threads():
    """Names of the threads other than the calling one that Python knows about."""
    me = threading.get_ident()
    return [f"{t.name} ({type(t).__name__})" for t in threading.enumerate() if t.ident != me]


def describe():
    """sys.version's number, sys.executable and sys.prefix."""
    return sys.version.split()[0], sys.executable, sys.prefix


def set_up(paths, env):
    """Puts ``paths`` at the front of sys.path (skipping ones already first) and sets
    ``env`` in os.environ."""
    import os

    for key, value in env:
        os.environ[key] = value
    for path in reversed(paths):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


def enable_faulthandler(fd):
    """On a fatal signal (the master's SIGABRT to a worker stuck starting, a crash in C code),
    Python writes every thread's stack to ``fd``: the error log."""
    import faulthandler
    import os

    faulthandler.enable(file=os.fdopen(fd, "w"), all_threads=True)


def run_atexit():
    """Runs the application's atexit handlers (a graceful stop), then flushes stdio."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def looks_asgi(app):
    """Whether ``app`` is an ASGI application: a coroutine function, or an object whose
    ``__call__`` is one (Starlette, FastAPI, Django's ASGIHandler). A class is not: ASGI 2
    applications are not served. asyncio's own test (which also knows functions asgiref marks as
    coroutines) only when the application has imported asyncio: importing it here would cost a
    WSGI worker some 4 MiB (asyncio, ssl, libcrypto) that it never uses."""
    import inspect

    asyncio = sys.modules.get("asyncio")

    def coroutine(fn):
        return inspect.iscoroutinefunction(fn) or (asyncio is not None and asyncio.iscoroutinefunction(fn))

    if inspect.isclass(app):
        return False
    if coroutine(app):
        return True
    call = getattr(app, "__call__", None)
    return call is not None and coroutine(call)
