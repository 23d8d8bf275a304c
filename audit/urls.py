from django.urls import path

from audit import views

app_name = "audit"
urlpatterns = [
    path("", views.logbook_review, name="review"),
]
