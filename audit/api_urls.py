from django.urls import path

from audit import apis

urlpatterns = [
    path("", apis.LogbookListApi.as_view(), name="api-logbook-list"),
]
