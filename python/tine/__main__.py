"""``python -m tine ARGS``: runs the ``tine`` program installed in this environment with ARGS.

The program, not this module, is the server: it embeds the Python it was built with and, run
from a virtualenv's bin/, uses that virtualenv. This module only finds it and replaces the
Python process with it, so signals and the exit status are the server's own.
"""

import os
import sys
import sysconfig


def main() -> None:
    scripts = sysconfig.get_path("scripts")
    program = os.path.join(scripts, "tine")
    if not os.access(program, os.X_OK):
        sys.exit(
            f"python -m tine: the tine program is missing from {scripts} "
            f"(looked for {program}); reinstall tine into this environment: "
            f"{sys.executable} -m pip install --force-reinstall PATH/TO/tine-VERSION.whl "
            f"(or `pip install .` in tine's checkout)"
        )
    try:
        os.execv(program, [program, *sys.argv[1:]])
    except OSError as err:
        sys.exit(f"python -m tine: could not run {program}: {err.strerror}")


if __name__ == "__main__":
    main()
