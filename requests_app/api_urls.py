from django.urls import path

import core.converters  # noqa: F401  (registers aws_account_id and instance_id)
from requests_app import apis

urlpatterns = [
    path("accounts/", apis.AccountListApi.as_view(), name="api-account-list"),
    path("accounts/<aws_account_id:account_id>/instances/", apis.InstanceListApi.as_view(), name="api-instance-list"),
    path("accounts/<aws_account_id:account_id>/sync/", apis.InventorySyncApi.as_view(), name="api-inventory-sync"),
    path("requests/", apis.AccessRequestListCreateApi.as_view(), name="api-request-list"),
    path("requests/<int:pk>/", apis.AccessRequestDetailApi.as_view(), name="api-request-detail"),
    path("requests/<int:pk>/approve/", apis.AccessRequestApproveApi.as_view(), name="api-request-approve"),
    path("requests/<int:pk>/reject/", apis.AccessRequestRejectApi.as_view(), name="api-request-reject"),
    path("requests/<int:pk>/cancel/", apis.AccessRequestCancelApi.as_view(), name="api-request-cancel"),
    path("requests/<int:pk>/extend/", apis.AccessRequestExtendApi.as_view(), name="api-request-extend"),
    path("requests/<int:pk>/complete/", apis.AccessRequestCompleteApi.as_view(), name="api-request-complete"),
    path(
        "requests/<int:pk>/credentials/",
        apis.AccessRequestAwsCredentialsApi.as_view(),
        name="api-request-credentials",
    ),
    path(
        "requests/<int:pk>/grants/<instance_id:instance_id>/certificate/",
        apis.GrantCertificateApi.as_view(),
        name="api-grant-certificate",
    ),
    path(
        "requests/<int:pk>/grants/<instance_id:instance_id>/password/",
        apis.GrantPasswordApi.as_view(),
        name="api-grant-password",
    ),
    path(
        "requests/<int:pk>/grants/<instance_id:instance_id>/session/",
        apis.GrantSessionApi.as_view(),
        name="api-grant-session",
    ),
    path("approvals/", apis.ApprovalQueueApi.as_view(), name="api-approval-queue"),
]
