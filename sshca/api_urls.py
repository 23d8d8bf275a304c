from django.urls import path

from sshca import apis

urlpatterns = [
    path("keys/", apis.CaKeyListApi.as_view(), name="api-ca-key-list"),
    path("keys.txt", apis.CaTrustedKeysTextApi.as_view(), name="api-ca-keys-text"),
]
