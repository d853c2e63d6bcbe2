"""``python -m tine ARGS``: runs the ``tine`` program installed in this environment with ARGS.

The program, not this module, is the server: it embeds the Python it was built with and, run
from a virtualenv's bin/, uses that virtualenv. This module only finds it (in the environment's
scripts directory, else the user's, as ``pip install --user`` puts it) and replaces the Python
process with it, so signals and the exit status are the server's own.
"""

import os
import sys
import sysconfig


def scripts_directories() -> list:
    """Where pip put the ``tine`` program: this environment's scripts, then, outside a
    virtualenv (which has no user scheme), the user's."""
    found = [sysconfig.get_path("scripts")]
    user_scheme = f"{os.name}_user"
    in_virtualenv = sys.prefix != sys.base_prefix
    if not in_virtualenv and user_scheme in sysconfig.get_scheme_names():
        found.append(sysconfig.get_path("scripts", user_scheme))
    return found


def main() -> None:
    directories = scripts_directories()
    for directory in directories:
        program = os.path.join(directory, "tine")
        if os.access(program, os.X_OK):
            break
    else:
        sys.exit(
            f"python -m tine: the tine program is missing from {' and '.join(directories)}; "
            f"reinstall tine into this environment: {sys.executable} -m pip install "
            f"--force-reinstall PATH/TO/tine-VERSION.whl (or `pip install .` in tine's checkout)"
        )
    try:
        os.execv(program, [program, *sys.argv[1:]])
    except OSError as err:
        sys.exit(f"python -m tine: could not run {program}: {err.strerror}")


if __name__ == "__main__":
    main()
