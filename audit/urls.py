from django.urls import path

from audit import views

app_name = "audit"
urlpatterns = [
    path("", views.logbook_review, name="review"),
    path("export.csv", views.logbook_export_csv, name="export-csv"),
    path("export.jsonl", views.logbook_export_jsonl, name="export-jsonl"),
]
