from django.urls import path

from requests_app import views

app_name = "requests"
urlpatterns = [
    path("", views.request_list, name="list"),
    path("new/", views.request_create, name="create"),
    path("approvals/", views.approval_queue, name="approvals"),
    path("inventory/", views.inventory, name="inventory"),
    path("<int:pk>/", views.request_detail, name="detail"),
]
