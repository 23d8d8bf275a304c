from django.http import HttpRequest, HttpResponse


def request_list(request: HttpRequest) -> HttpResponse:
    return HttpResponse("")


request_create = approval_queue = inventory = request_detail = request_list
