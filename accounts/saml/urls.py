from django.urls import path

from accounts.saml import views

# Named saml_* like allauth's SAML routes: public sign-in endpoints, no portal permissions.
urlpatterns = [
    path("<slug:slug>/login/", views.saml_login, name="saml_login"),
    path("<slug:slug>/acs/", views.saml_acs, name="saml_acs"),
    path("<slug:slug>/acs/finish/", views.saml_finish, name="saml_finish"),
    path("<slug:slug>/sls/", views.saml_sls, name="saml_sls"),
    path("<slug:slug>/metadata/", views.saml_metadata, name="saml_metadata"),
]
