"""An application whose import takes TINE_TEST_IMPORT_SECONDS (default 2) seconds; at its end it
creates the file ``imported`` in the directory TINE_TEST_STATE names, when set."""

import os
import time

IMPORT_STARTED = time.time()
time.sleep(float(os.environ.get("TINE_TEST_IMPORT_SECONDS", "2")))
IMPORTED = time.time()
if os.environ.get("TINE_TEST_STATE"):
    open(os.path.join(os.environ["TINE_TEST_STATE"], "imported"), "w").close()


def application(environ, start_response):
    body = b"ok"
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
