from django.urls import path

from . import views

urlpatterns = [
    path("whoami", views.whoami),
    path("session/get", views.session_get),
    path("session/set", views.session_set),
    path("login", views.login_view),
    path("logout", views.logout_view),
    path("change-password", views.change_password),
]
