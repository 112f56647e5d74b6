from django.urls import path

from exports import api

urlpatterns = [
    path("projects/<int:pk>/exports/", api.ExportListView.as_view(), name="api-exports"),
    path("exports/<int:pk>/", api.ExportView.as_view(), name="api-export"),
    path(
        "exports/<int:pk>/download/",
        api.ExportDownloadView.as_view(),
        name="api-export-download",
    ),
    path("exports/<int:pk>/cancel/", api.ExportCancelView.as_view(), name="api-export-cancel"),
]
