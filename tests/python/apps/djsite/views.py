"""The views of the Django site, the same routes as flask_app.py."""

import asyncio
import hashlib
import os
import zlib

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
                "crc32": "%08x" % zlib.crc32(data),
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


# How many async_view calls are between their start and their end, and the most there were.
_async_now = 0
_async_peak = 0


async def async_view(request):
    """An async view: waits ``?s=`` seconds on the event loop (under ASGI) and says how many
    calls overlapped at most."""
    global _async_now, _async_peak
    _async_now += 1
    _async_peak = max(_async_peak, _async_now)
    try:
        await asyncio.sleep(float(request.GET.get("s", "0")))
    finally:
        _async_now -= 1
    return JsonResponse({"peak": _async_peak})
