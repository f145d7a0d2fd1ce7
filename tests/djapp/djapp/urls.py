from django.urls import path

from shop.views import celeriac_webhook

urlpatterns = [path("celeriac/", celeriac_webhook)]
