from django.urls import path

from terminal import views

app_name = "terminal"

urlpatterns = [
    path("<int:grant_id>/", views.terminal_page, name="page"),
    path("recordings/", views.recording_list, name="recordings"),
    path("recordings/<int:pk>/", views.recording_page, name="recording"),
    path("recordings/<int:pk>/cast", views.recording_cast, name="recording-cast"),
]
