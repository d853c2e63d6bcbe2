"""An application whose import takes TINE_TEST_IMPORT_SECONDS (default 2) seconds."""

import os
import time

IMPORT_STARTED = time.time()
time.sleep(float(os.environ.get("TINE_TEST_IMPORT_SECONDS", "2")))
IMPORTED = time.time()


def application(environ, start_response):
    body = b"ok"
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
