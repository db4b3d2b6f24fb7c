from django.urls import path

from catalog import views

app_name = "catalog"

urlpatterns = [
    path("", views.search_page, name="home"),
    path("products/<int:pk>/", views.product_page, name="product"),
]
