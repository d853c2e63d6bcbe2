from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("form", views.form),
    path("cookie/set", views.cookie_set),
    path("cookie/read", views.cookie_read),
    path("redirect", views.go_elsewhere),
    path("target", views.target),
    path("upload", views.upload),
    path("echo", views.echo),
    path("stream", views.stream),
    path("file", views.file),
    path("async", views.async_view),
]
