"""Input validation and output shapes. Serializers never write: views call services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from catalog.api.representation import (
    IMAGE_FIELDS,
    PRODUCT_FIELDS,
    STAFF_ONLY_IMAGE_FIELDS,
    STAFF_ONLY_PRODUCT_FIELDS,
    for_viewer,
    image_for_viewer,
    image_representation,
    image_url,
    product_representation,
)
from catalog.models import Category, Product, ProductImage


class SlugLookupField(serializers.SlugRelatedField):
    """A related object by slug, the slug checked before the lookup: PostgreSQL refuses a
    NUL byte in a query with an error (a 500), SQLite just finds nothing."""

    def to_internal_value(self, data: object) -> object:
        if not isinstance(data, str) or "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


class CategorySerializer(serializers.ModelSerializer):
    parent = SlugLookupField(
        slug_field="slug", queryset=Category.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = Category
        fields = ["id", "name", "slug", "parent"]


class StaffOnlyFields:
    """A serializer some of whose output fields only staff see (`staff_only_fields`)."""

    staff_only_fields: tuple[str, ...] = ()


class StaffOnlyFieldsSchema(OpenApiSerializerExtension):
    """The response schema lists staff-only fields as optional: others never get them."""

    target_class = StaffOnlyFields
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        hidden = set(self.target.staff_only_fields)
        if "required" in schema:
            schema["required"] = [name for name in schema["required"] if name not in hidden]
        for name in hidden & set(schema.get("properties", {})):
            field = schema["properties"][name]
            if "$ref" not in field:
                note = field.get("description", "")
                field["description"] = f"Staff only: absent for other users. {note}".strip()
        return schema


class ProductImageSerializer(StaffOnlyFields, serializers.ModelSerializer):
    staff_only_fields = STAFF_ONLY_IMAGE_FIELDS
    url = serializers.SerializerMethodField()

    class Meta:
        model = ProductImage
        fields = list(IMAGE_FIELDS)
        read_only_fields = fields

    def get_url(self, obj: ProductImage) -> str | None:
        return image_url(obj, self.context.get("request"))

    def to_representation(self, instance: ProductImage) -> dict:
        request = self.context.get("request")
        return image_for_viewer(image_representation(instance, request), request)


class ImageCreateSerializer(serializers.Serializer):
    """Either a multipart file `image` or a JSON `source_url`, not both."""

    image = serializers.FileField(required=False)
    source_url = serializers.URLField(required=False, max_length=2000)
    position = serializers.IntegerField(required=False, min_value=0, max_value=10_000)

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("image")) == bool(attrs.get("source_url")):
            raise serializers.ValidationError(
                "Give exactly one of `image` (a file) or `source_url`."
            )
        return attrs


class ProductSerializer(StaffOnlyFields, serializers.ModelSerializer):
    staff_only_fields = STAFF_ONLY_PRODUCT_FIELDS
    category = SlugLookupField(
        slug_field="slug", queryset=Category.objects.all(), required=False, allow_null=True
    )
    images = ProductImageSerializer(many=True, read_only=True)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)

    class Meta:
        model = Product
        fields = list(PRODUCT_FIELDS)
        read_only_fields = ["index_state", "index_error", "created_at", "updated_at"]

    def to_representation(self, instance: Product) -> dict:
        request = self.context.get("request")
        return for_viewer(product_representation(instance, request), request)

    def validate_currency(self, value: str) -> str:
        if len(value) != 3 or not value.isalpha():
            raise serializers.ValidationError("Use a 3-letter ISO 4217 code, e.g. USD.")
        return value.upper()

    def validate_attributes(self, value: object) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError("attributes must be a JSON object.")
        return value
