from django.urls import path

from terminal import live_views, views

app_name = "terminal"

urlpatterns = [
    path("<int:grant_id>/", views.terminal_page, name="page"),
    path("live/", live_views.live_now, name="live"),
    path("live/<int:pk>/", live_views.watch_page, name="watch"),
    path("live/<int:pk>/end/", live_views.end_session, name="end"),
    path("recordings/", views.recording_list, name="recordings"),
    path("recordings/<int:pk>/", views.recording_page, name="recording"),
    path("recordings/<int:pk>/cast", views.recording_cast, name="recording-cast"),
]
