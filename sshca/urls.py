from django.urls import path

from sshca import views

app_name = "sshca"
urlpatterns = [
    path("", views.ca_keys, name="keys"),
]
