"""The views of the Django site, the same routes as flask_app.py."""

import hashlib
import os

from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample.txt")


def index(request):
    return JsonResponse({"message": "hello"})


@csrf_exempt
def form(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return JsonResponse({key: request.POST.getlist(key) for key in request.POST})


def cookie_set(request):
    response = HttpResponse("cookie set\n", content_type="text/plain")
    response.set_cookie(request.GET["name"], request.GET["value"])
    return response


def cookie_read(request):
    return JsonResponse(dict(request.COOKIES))


def go_elsewhere(request):
    return HttpResponseRedirect("/target")


def target(request):
    return HttpResponse("target reached\n", content_type="text/plain")


@csrf_exempt
def upload(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    files = []
    for field in request.FILES:
        for upload in request.FILES.getlist(field):
            data = upload.read()
            files.append(
                {
                    "field": field,
                    "filename": upload.name,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    return JsonResponse({"files": files, "form": request.POST.dict()})


@csrf_exempt
def echo(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    data = request.body
    response = HttpResponse(data, content_type="application/octet-stream")
    response["X-Echo-Length"] = str(len(data))
    return response


def stream(request):
    n = int(request.GET.get("n", "5"))
    label = request.GET.get("label", "stream")
    lines = ("line %d of %s\n" % (i, label) for i in range(n))
    return StreamingHttpResponse(lines, content_type="text/plain; charset=utf-8")


def file(request):
    return FileResponse(open(SAMPLE, "rb"), content_type="text/plain")
