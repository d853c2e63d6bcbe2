"""An application whose import fails: tine must exit non-zero and show this traceback."""

MARK = "broken_app refuses to import (tine import-error test)"


def fail_at_import():
    raise RuntimeError(MARK)


fail_at_import()


def application(environ, start_response):  # never reached
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"unreachable"]
