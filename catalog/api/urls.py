from django.urls import include, path
from rest_framework.routers import DefaultRouter

from catalog.api.health import HealthView
from catalog.api.views import CategoryViewSet, ProductImageViewSet, ProductViewSet

router = DefaultRouter()
router.register("products", ProductViewSet, basename="product")
router.register("categories", CategoryViewSet, basename="category")
router.register("images", ProductImageViewSet, basename="image")

urlpatterns = [
    path("health/", HealthView.as_view(), name="health"),
    path("", include(router.urls)),
]
