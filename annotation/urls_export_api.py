from django.urls import path

from annotation import export_api

urlpatterns = [
    path("projects/<int:pk>/exports/", export_api.ExportListView.as_view(), name="api-exports"),
    path("exports/<int:pk>/", export_api.ExportView.as_view(), name="api-export"),
    path(
        "exports/<int:pk>/download/",
        export_api.ExportDownloadView.as_view(),
        name="api-export-download",
    ),
    path(
        "exports/<int:pk>/cancel/", export_api.ExportCancelView.as_view(), name="api-export-cancel"
    ),
]
