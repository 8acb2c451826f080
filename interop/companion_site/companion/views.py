"""The same routes as the Rust example `django_companion`, plus a password change."""

import json

from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.http import HttpResponseBadRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST


def _user(request):
    return request.user.get_username() if request.user.is_authenticated else None


@require_GET
def whoami(request):
    return JsonResponse({"user": _user(request)})


@require_GET
def session_get(request):
    key = request.GET.get("key")
    if key is None:
        return HttpResponseBadRequest("missing key")
    return JsonResponse({"value": request.session.get(key)})


@require_GET
def session_set(request):
    key = request.GET.get("key")
    if key is None:
        return HttpResponseBadRequest("missing key")
    if "json" in request.GET:
        value = json.loads(request.GET["json"])
    elif "value" in request.GET:
        value = request.GET["value"]
    else:
        return HttpResponseBadRequest("give value or json")
    request.session[key] = value
    return JsonResponse({"value": value})


@require_POST
def login_view(request):
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return JsonResponse({"user": None}, status=401)
    login(request, user)
    return JsonResponse({"user": user.get_username()})


@require_POST
def logout_view(request):
    logout(request)
    return JsonResponse({"user": None})


@require_POST
def change_password(request):
    """Changes the logged-in user's password; this session stays logged in (Django's
    update_session_auth_hash), every other session of the user logs out."""
    if not request.user.is_authenticated:
        return JsonResponse({"user": None}, status=401)
    request.user.set_password(request.POST["password"])
    request.user.save()
    update_session_auth_hash(request, request.user)
    return JsonResponse({"user": _user(request)})
