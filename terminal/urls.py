from django.urls import path

from terminal import views

app_name = "terminal"

urlpatterns = [
    path("<int:grant_id>/", views.terminal_page, name="page"),
]
