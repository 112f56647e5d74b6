from django.urls import path

from rewards import api

urlpatterns = [
    path("projects/<int:pk>/reward-runs/", api.RewardRunListView.as_view(), name="api-reward-runs"),
    path("reward-runs/<int:pk>/", api.RewardRunView.as_view(), name="api-reward-run"),
    path(
        "reward-runs/<int:pk>/cancel/",
        api.RewardRunCancelView.as_view(),
        name="api-reward-run-cancel",
    ),
    path(
        "projects/<int:pk>/reward-models/",
        api.RewardModelListView.as_view(),
        name="api-reward-models",
    ),
    path("reward-models/<str:version>/score/", api.ScoreView.as_view(), name="api-reward-score"),
    path("bases/", api.BaseListView.as_view(), name="api-bases"),
]
