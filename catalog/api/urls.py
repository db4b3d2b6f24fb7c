from django.urls import include, path
from rest_framework.routers import DefaultRouter

from catalog.api.health import HealthView
from catalog.api.search import SearchView, SimilarView
from catalog.api.views import CategoryViewSet, ProductImageViewSet, ProductViewSet

router = DefaultRouter()
router.register("products", ProductViewSet, basename="product")
router.register("categories", CategoryViewSet, basename="category")
router.register("images", ProductImageViewSet, basename="image")

urlpatterns = [
    path("health/", HealthView.as_view(), name="health"),
    path("search/", SearchView.as_view(), name="search"),
    path("products/<int:pk>/similar/", SimilarView.as_view(), name="product-similar"),
    path("", include(router.urls)),
]
