"""Thin views: validate, call one service or selector, serialise."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.filters import ProductFilter
from catalog.api.parsers import BoundedJSONParser
from catalog.api.representation import is_staff
from catalog.api.serializers import (
    CategorySerializer,
    ImageCreateSerializer,
    ProductImageSerializer,
    ProductSerializer,
)
from catalog.models import Category, Product, ProductImage
from catalog.services import categories as category_services
from catalog.services import images as image_services
from catalog.services import products as product_services


class CategoryViewSet(viewsets.ModelViewSet):
    queryset = Category.objects.select_related("parent")
    serializer_class = CategorySerializer
    ordering_fields = ["name", "slug"]
    filterset_fields = ["parent__slug"]

    def perform_create(self, serializer: CategorySerializer) -> None:
        serializer.instance = category_services.category_create(**serializer.validated_data)

    def perform_update(self, serializer: CategorySerializer) -> None:
        serializer.instance = category_services.category_update(
            category=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: Category) -> None:
        category_services.category_delete(category=instance)


class ProductViewSet(viewsets.ModelViewSet):
    queryset = Product.objects.select_related("category").prefetch_related(
        Prefetch("images", queryset=ProductImage.objects.order_by("position", "id"))
    )
    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    ordering_fields = ["price", "created_at", "updated_at", "title", "sku"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> QuerySet[Product]:
        """Everyone reads active products; only staff see inactive (unreleased) ones."""
        products = super().get_queryset()
        return products if is_staff(self.request) else products.filter(is_active=True)

    def perform_create(self, serializer: ProductSerializer) -> None:
        serializer.instance = product_services.product_create(**serializer.validated_data)

    def perform_update(self, serializer: ProductSerializer) -> None:
        serializer.instance = product_services.product_update(
            product=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: Product) -> None:
        product_services.product_delete(product=instance)

    @extend_schema(
        methods=["GET"],
        operation_id="products_images_list",
        description="A product's images.",
        request=None,
        responses=OpenApiResponse(
            ProductImageSerializer(many=True), description="the images, in their order"
        ),
    )
    @extend_schema(
        methods=["POST"],
        description="Add an image: a multipart `image`, or JSON `source_url` (fetched by an "
        "encode worker). An upload of bytes this product already has answers 200 with that "
        "image.",
        request=ImageCreateSerializer,
        responses={
            201: OpenApiResponse(ProductImageSerializer, description="the image added"),
            200: OpenApiResponse(
                ProductImageSerializer,
                description="these bytes were uploaded to this product already: that image",
            ),
        },
    )
    @action(
        detail=True,
        methods=["get", "post"],
        parser_classes=[MultiPartParser, FormParser, BoundedJSONParser],
        serializer_class=ImageCreateSerializer,
        # The product is looked up by id alone and its images are not paged.
        filter_backends=[],
        pagination_class=None,
    )
    def images(self, request: Request, pk: str | None = None) -> Response:
        """List a product's images, or add one (the schema says how, per method)."""
        product = self.get_object()
        if request.method == "GET":
            data = ProductImageSerializer(
                product.images.all(), many=True, context={"request": request}
            ).data
            return Response(data)
        form = ImageCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        position = form.validated_data.get("position")
        created = True
        if form.validated_data.get("image"):
            image, created = image_services.image_get_or_add_upload(
                product=product, upload=form.validated_data["image"], position=position
            )
        else:
            image = image_services.image_add_url(
                product=product, source_url=form.validated_data["source_url"], position=position
            )
        out = ProductImageSerializer(image, context={"request": request}).data
        return Response(out, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ProductImageViewSet(
    mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """One image: read it, or delete it (which takes it out of the index)."""

    queryset = ProductImage.objects.select_related("product")
    serializer_class = ProductImageSerializer

    def get_queryset(self) -> QuerySet[ProductImage]:
        """The images of inactive products are staff-only, like the products."""
        images = super().get_queryset()
        return images if is_staff(self.request) else images.filter(product__is_active=True)

    def perform_destroy(self, instance: ProductImage) -> None:
        image_services.image_delete(image=instance)
