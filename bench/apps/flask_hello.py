"""The Flask application bench/wsgi.sh serves: `GET /` returns `{"message": "hello"}` through
`jsonify` (the seed's hello route).

Serve it as `flask_hello:app` with this directory on the Python path.
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def hello():
    return jsonify({"message": "hello"})
