from django.urls import path

from requests_app import views

app_name = "requests"
urlpatterns = [
    path("", views.request_list, name="list"),
    path("new/", views.request_create, name="create"),
    path("new/instances/", views.instance_picker, name="instance_picker"),
    path("approvals/", views.approval_queue, name="approvals"),
    path("approvals/count/", views.approvals_count, name="approvals_count"),
    path("inventory/", views.inventory, name="inventory"),
    path("inventory/<int:account_pk>/sync/", views.inventory_sync, name="inventory_sync"),
    path("<int:pk>/", views.request_detail, name="detail"),
    path("<int:pk>/grants/<int:grant_pk>/password/", views.grant_password, name="grant_password"),
    path("<int:pk>/<str:action>/", views.request_action, name="action"),
]
