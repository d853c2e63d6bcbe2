"""A small Flask application for tine's WSGI tests, also run under gunicorn by the
differential test: the same session against both must give the same answers."""

import hashlib
import os

from flask import Flask, Response, jsonify, make_response, redirect, request, send_file
from flask import stream_with_context

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample.txt")

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(message="hello")


@app.post("/form")
def form():
    return jsonify({key: request.form.getlist(key) for key in request.form})


@app.get("/cookie/set")
def cookie_set():
    response = make_response("cookie set\n")
    response.set_cookie(request.args["name"], request.args["value"])
    return response


@app.get("/cookie/read")
def cookie_read():
    return jsonify(dict(request.cookies))


@app.get("/redirect")
def go_elsewhere():
    return redirect("/target")


@app.get("/target")
def target():
    return "target reached\n"


@app.post("/upload")
def upload():
    files = []
    for field, storage in request.files.items(multi=True):
        data = storage.read()
        files.append(
            {
                "field": field,
                "filename": storage.filename,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return jsonify(files=files, form=request.form.to_dict())


@app.post("/echo")
def echo():
    data = request.get_data()
    return Response(
        data,
        content_type="application/octet-stream",
        headers={"X-Echo-Length": str(len(data))},
    )


@app.get("/stream")
def stream():
    n = int(request.args.get("n", "5"))

    @stream_with_context
    def lines():
        for i in range(n):
            # request is still usable here, thanks to stream_with_context.
            yield "line %d of %s\n" % (i, request.args.get("label", "stream"))

    return Response(lines(), content_type="text/plain; charset=utf-8")


@app.get("/file")
def file():
    return send_file(SAMPLE, mimetype="text/plain")
