from django.urls import path

from requests_app.views import actions, approvals, credentials, inventory, pages

app_name = "requests"
urlpatterns = [
    path("", pages.request_list, name="list"),
    path("new/", pages.request_create, name="create"),
    path("new/instances/", pages.instance_picker, name="instance_picker"),
    path("approvals/", approvals.approval_queue, name="approvals"),
    path("approvals/count/", approvals.approvals_count, name="approvals_count"),
    path("inventory/", inventory.inventory, name="inventory"),
    path("inventory/<int:account_pk>/sync/", inventory.inventory_sync, name="inventory_sync"),
    path("<int:pk>/", pages.request_detail, name="detail"),
    path("<int:pk>/grants/<int:grant_pk>/password/", credentials.grant_password, name="grant_password"),
    path("<int:pk>/<str:action>/", actions.request_action, name="action"),
]
