"""tine, a pre-fork HTTP/1.1 server for WSGI and ASGI applications.

The server is the ``tine`` program this package installs into the environment's scripts
directory; ``python -m tine`` runs it (see ``__main__``).
"""
