"""The REST API of the access-request domain, one module per resource.

``accounts`` (accounts, instances, inventory sync), ``access_requests`` (requests and their
transitions, the approval queue), ``grants`` (certificate, password), ``credentials`` (AWS
credentials of a request), ``sessions`` (Session Manager sessions); ``pagination`` the
orderings of the paged lists and ``common`` the helpers the endpoints share. The project-wide
pieces (exception handler, schema extension) are in ``passport_portal.api``. URLs are in ``requests_app.api_urls``.
"""

from requests_app.apis.access_requests import (
    AccessRequestApproveApi,
    AccessRequestCancelApi,
    AccessRequestCompleteApi,
    AccessRequestDetailApi,
    AccessRequestExtendApi,
    AccessRequestListCreateApi,
    AccessRequestRejectApi,
    ApprovalQueueApi,
)
from requests_app.apis.accounts import AccountListApi, InstanceListApi, InventorySyncApi
from requests_app.apis.credentials import AccessRequestAwsCredentialsApi
from requests_app.apis.grants import GrantCertificateApi, GrantPasswordApi
from requests_app.apis.pagination import InstancePagination, NewestFirstPagination, OldestFirstPagination
from requests_app.apis.sessions import GrantSessionApi

__all__ = [
    "AccessRequestApproveApi",
    "AccessRequestAwsCredentialsApi",
    "AccessRequestCancelApi",
    "AccessRequestCompleteApi",
    "AccessRequestDetailApi",
    "AccessRequestExtendApi",
    "AccessRequestListCreateApi",
    "AccessRequestRejectApi",
    "AccountListApi",
    "ApprovalQueueApi",
    "GrantCertificateApi",
    "GrantPasswordApi",
    "GrantSessionApi",
    "InstanceListApi",
    "InstancePagination",
    "InventorySyncApi",
    "NewestFirstPagination",
    "OldestFirstPagination",
]
