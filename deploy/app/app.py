"""The application deploy/Dockerfile packs when you have not put your own here: a Flask app
that says hello, and shows the client address and scheme tine passed it (behind nginx or
HAProxy, the client's, when forwarded_allow_ips trusts the proxy)."""

from flask import Flask, request

app = Flask(__name__)


@app.get("/")
def hello():
    return {"hello": "world", "client": request.remote_addr, "scheme": request.scheme}
