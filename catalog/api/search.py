"""Search endpoints: text (GET), photo or URL or text (POST), and "more like this"."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import search
from catalog.api.params import ShallowFields, check_parameters, field_names
from catalog.api.parsers import BoundedJSONParser
from catalog.api.representation import absolute_url, for_viewer
from catalog.api.schema import CLOSED_BODY
from catalog.api.serializers import ProductSerializer
from catalog.api.throttles import RedisWindowThrottle
from catalog.errors import ServiceError
from catalog.services.images import check_image, image_limits, read_upload, url_policy
from workers.encoding.errors import ImageRejected
from workers.encoding.urls import fetch_url_bytes


class SearchFilters(ShallowFields, serializers.Serializer):
    k = serializers.IntegerField(min_value=1, max_value=100, default=20)
    category = serializers.SlugField(required=False, max_length=120)
    min_price = serializers.FloatField(required=False, min_value=0, max_value=1e12)
    max_price = serializers.FloatField(required=False, min_value=0, max_value=1e12)
    in_stock = serializers.BooleanField(required=False, allow_null=True, default=None)

    def validate(self, attrs: dict) -> dict:
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"max_price": "must be at least min_price"})
        return attrs

    def shard_filter(self):
        data = self.validated_data
        return search.build_filter(
            category=data.get("category"),
            min_price=data.get("min_price"),
            max_price=data.get("max_price"),
            in_stock=data.get("in_stock"),
        )


class TextSearchQuery(SearchFilters):
    q = serializers.CharField(max_length=500, trim_whitespace=True)


class SearchRequest(SearchFilters):
    """Exactly one of: an uploaded `image`, an `image_url`, or a text `q`."""

    q = serializers.CharField(required=False, max_length=500)
    image = serializers.FileField(required=False)
    image_url = serializers.URLField(required=False, max_length=2000)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        given = [name for name in ("q", "image", "image_url") if attrs.get(name)]
        if len(given) != 1:
            raise serializers.ValidationError("Give exactly one of `q`, `image` or `image_url`.")
        return attrs


class SearchHitSerializer(serializers.Serializer):
    product = ProductSerializer()
    score = serializers.FloatField()
    image = serializers.CharField(allow_null=True)


class ShardsSerializer(serializers.Serializer):
    answered = serializers.IntegerField()
    total = serializers.IntegerField()
    missing = serializers.ListField(
        child=serializers.IntegerField(), help_text="shards whose results are not included"
    )


class SearchResponse(serializers.Serializer):
    results = SearchHitSerializer(many=True)
    took_ms = serializers.FloatField()
    partial = serializers.BooleanField()
    shards = ShardsSerializer()


def _result(request: Request, hit: search.Hit) -> dict:
    """A hit with absolute media URLs, and the image that matched (the product's first
    image if that one has gone since)."""
    product = for_viewer(dict(hit.product), request)  # cards hold the staff-only fields
    images = [{**image, "url": absolute_url(image["url"], request)} for image in product["images"]]
    product["images"] = images
    chosen = next((i for i in images if i["id"] == hit.image_id), images[0])
    return {"product": product, "score": round(hit.score, 6), "image": chosen["url"]}


def _respond(request: Request, page: search.SearchPage) -> Response:
    body = {
        "results": [_result(request, hit) for hit in page.hits],
        "took_ms": round(page.took_ms, 2),
        "partial": page.partial,
        "shards": {"answered": page.answered, "total": page.total, "missing": list(page.missing)},
    }
    return Response(body)


_ERRORS = {
    400: OpenApiResponse(description="invalid parameters or unreadable image"),
    503: OpenApiResponse(description="no search worker (or encoder) answered"),
}


class SearchView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [RedisWindowThrottle]
    throttle_scope = "search"
    parser_classes = [BoundedJSONParser, MultiPartParser, FormParser]

    @extend_schema(parameters=[TextSearchQuery], responses={200: SearchResponse, **_ERRORS})
    def get(self, request: Request) -> Response:
        """Text search. A query parameter not listed here (or one given twice) is a 400
        `unknown_parameter` naming it."""
        check_parameters(request, query=field_names(TextSearchQuery))
        query = TextSearchQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.shard_filter()
        vector = search.text_vector(query.validated_data["q"])
        page = search.search(vector, k=query.validated_data["k"], filters=filters)
        return _respond(request, page)

    @extend_schema(
        request=SearchRequest,
        responses={200: SearchResponse, **_ERRORS},
        extensions={CLOSED_BODY: True},
    )
    def post(self, request: Request) -> Response:
        """Search by an uploaded photo (multipart `image`), an `image_url`, or a text `q`.

        Everything goes in the body: any query parameter, or a body field not listed
        here, is a 400 `unknown_parameter` naming it."""
        check_parameters(request, query=(), body=field_names(SearchRequest))
        form = SearchRequest(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        filters = form.shard_filter()
        if data.get("image"):
            limits = image_limits()
            photo = read_upload(data["image"], limits)
            check_image(photo, limits, field="image")  # before any encoder sees it
            vector = search.image_vector(photo)
        elif data.get("image_url"):
            vector = search.image_vector(_fetch(data["image_url"]))
        else:
            vector = search.text_vector(data["q"])
        page = search.search(vector, k=data["k"], filters=filters)
        return _respond(request, page)


def _fetch(url: str) -> bytes:
    """The image at `url`, its header checked like an upload's; a refusal is a 400."""
    policy = url_policy(total_timeout=settings.SEARCH_IMAGE_URL_TIMEOUT)
    limits = image_limits()
    try:
        data = fetch_url_bytes(url, max_bytes=limits.max_bytes, policy=policy)
    except ImageRejected as exc:
        raise ServiceError(
            exc.message, code=exc.reason_code, details={"image_url": [exc.message]}
        ) from exc
    check_image(data, limits, field="image_url")
    return data


class SimilarView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [RedisWindowThrottle]
    throttle_scope = "search"

    @extend_schema(
        parameters=[SearchFilters], responses={200: SearchResponse, 404: None, **_ERRORS}
    )
    def get(self, request: Request, pk: int) -> Response:
        """More like this product, from its stored embedding (no re-encoding). A query
        parameter not listed here (or one given twice) is a 400 `unknown_parameter`."""
        check_parameters(request, query=field_names(SearchFilters))
        query = SearchFilters(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.shard_filter()
        vector = search.product_vector(pk)
        page = search.search(
            vector, k=query.validated_data["k"], filters=filters, exclude_product=pk
        )
        return _respond(request, page)
