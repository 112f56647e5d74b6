from django.urls import path

from annotation import media, views

urlpatterns = [
    path("", views.queue, name="queue"),
    path("projects/<int:project_id>/annotate/", views.annotate, name="annotate"),
    path("images/<str:sha256>/", media.original, name="image"),
    path("images/<str:sha256>/thumb/", media.thumbnail, name="image-thumbnail"),
]
