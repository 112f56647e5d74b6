from django.urls import path

from training import api

urlpatterns = [
    path(
        "projects/<int:pk>/finetune-runs/",
        api.FinetuneRunListView.as_view(),
        name="api-finetune-runs",
    ),
    path("finetune-runs/<int:pk>/", api.FinetuneRunView.as_view(), name="api-finetune-run"),
    path(
        "finetune-runs/<int:pk>/cancel/",
        api.FinetuneRunCancelView.as_view(),
        name="api-finetune-run-cancel",
    ),
    path(
        "projects/<int:pk>/generation-runs/",
        api.GenerationRunListView.as_view(),
        name="api-generation-runs",
    ),
    path("generation-runs/<int:pk>/", api.GenerationRunView.as_view(), name="api-generation-run"),
    path(
        "generation-runs/<int:pk>/cancel/",
        api.GenerationRunCancelView.as_view(),
        name="api-generation-run-cancel",
    ),
]
