from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser

from catalog.admin_views import search_health
from catalog.api.errors import api_not_found
from catalog.api.parsers import BoundedJSONParser
from catalog.observability import metrics_view

urlpatterns = [
    path(
        "admin/search-health/",
        admin.site.admin_view(search_health),
        name="admin-search-health",
    ),
    path("admin/", admin.site.urls),
    path("api/", include("catalog.api.urls")),
    path(
        "api/token/",
        # DRF's view lists its own parsers: give it the bounded JSON one too.
        ObtainAuthToken.as_view(parser_classes=[FormParser, MultiPartParser, BoundedJSONParser]),
        name="api-token",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    re_path(r"^api/", api_not_found),  # after every API route: JSON 404s, never HTML
    path("metrics", metrics_view, name="metrics"),
    path("", include("catalog.urls")),
]

if settings.SERVE_MEDIA:
    # Local and small deployments; a large one serves MEDIA_ROOT from a proxy or object store.
    urlpatterns += [
        re_path(
            rf"^{settings.MEDIA_URL.strip('/')}/(?P<path>.*)$",
            serve,
            {"document_root": settings.MEDIA_ROOT},
        ),
    ]
