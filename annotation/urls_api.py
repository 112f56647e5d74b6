from django.urls import path

from annotation import api

urlpatterns = [
    path("auth/token/", api.TokenView.as_view(), name="api-token"),
    path("users/", api.UserListView.as_view(), name="api-users"),
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:pk>/", api.ProjectDetailView.as_view(), name="api-project"),
    path("projects/<int:pk>/members/", api.MemberView.as_view(), name="api-members"),
    path("projects/<int:pk>/imports/", api.ImportView.as_view(), name="api-imports"),
    path("projects/<int:pk>/next/", api.NextTaskView.as_view(), name="api-next"),
    path("projects/<int:pk>/stats/", api.StatsView.as_view(), name="api-stats"),
    path("assignments/<int:pk>/judgement/", api.JudgementView.as_view(), name="api-judgement"),
    path("assignments/<int:pk>/skip/", api.SkipView.as_view(), name="api-skip"),
]
