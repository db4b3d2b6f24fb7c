"""Search endpoints: text (GET), photo or URL or text (POST), and "more like this"."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

from django.conf import settings
from django.utils.datastructures import MultiValueDict
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from catalog import product_cache, search, text_search
from catalog.api.json_get import JsonGetView
from catalog.api.params import ShallowFields, check_parameters, field_names
from catalog.api.parsers import BoundedJSONParser
from catalog.api.representation import card_for_viewer, is_staff
from catalog.api.schema import CLOSED_BODY
from catalog.api.serializers import ProductSerializer
from catalog.api.throttles import RedisWindowThrottle
from catalog.errors import ServiceError
from catalog.facets import FACETS
from catalog.services.images import check_image, image_limits, read_upload, url_policy
from workers.encoding.errors import ImageRejected
from workers.encoding.urls import fetch_url_bytes

MODES, SORTS = text_search.MODES, text_search.SORTS


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
        return _shard_filter(self.validated_data)


def _shard_filter(data: Mapping) -> search.SearchFilter:
    return search.build_filter(
        category=data.get("category"),
        min_price=data.get("min_price"),
        max_price=data.get("max_price"),
        in_stock=data.get("in_stock"),
    )


@functools.lru_cache(maxsize=1024)
def _similar_filters(parameters: tuple[tuple[str, str], ...]) -> Mapping:
    """SearchFilters' validated data for these query parameters (each given once), worked
    out once per set: product pages send the same few, and the serializer's validation
    is a large share of the view's own CPU. One that fails raises each time (nothing is
    remembered). The shard filter is still built per request: a category's descendants
    can change."""
    query = SearchFilters(data=MultiValueDict({name: [value] for name, value in parameters}))
    query.is_valid(raise_exception=True)
    return MappingProxyType(dict(query.validated_data))


FACET_NAMES_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "enum": list(FACETS)},
    "uniqueItems": True,
}


@extend_schema_field(FACET_NAMES_SCHEMA)
class FacetNamesField(serializers.Field):
    """A comma-separated list of facet names (`category,brand`); empty: no facets."""

    allow_blank = True  # DRF's query-string reading: `facets=` is given, and empty
    default_error_messages = {"unknown": "not a facet: {names}; facets offered: {offered}"}

    def to_internal_value(self, data: object) -> tuple[str, ...]:
        names = [name.strip() for name in str(data).split(",") if name.strip()]
        unknown = sorted(set(names) - set(FACETS))
        if unknown:
            self.fail("unknown", names=", ".join(unknown), offered=", ".join(FACETS))
        return tuple(name for name in FACETS if name in names)

    def to_representation(self, value: tuple[str, ...]) -> list[str]:
        return list(value)


class TextSearchQuery(SearchFilters):
    """A text search: `k` results per page, `page` counted from 1 within the depth."""

    q = serializers.CharField(max_length=500, trim_whitespace=True)
    brand = serializers.CharField(required=False, max_length=120, help_text="exact, any case")
    mode = serializers.ChoiceField(
        choices=MODES,
        default="hybrid",
        help_text="hybrid: the words and CLIP rankings fused; vector: CLIP alone; "
        "keyword: the words alone (SKU, brand, title, description)",
    )
    sort = serializers.ChoiceField(choices=SORTS, default="relevance")
    page = serializers.IntegerField(
        min_value=1,
        default=1,
        help_text="pages reach as deep as the depth (SEARCH_MAX_DEPTH results, 1,000 by "
        "default): a page starting past it is a 400",
    )
    facets = FacetNamesField(required=False, default=FACETS)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        depth = text_search.max_depth()
        if (attrs["page"] - 1) * attrs["k"] >= depth:
            raise serializers.ValidationError(
                {"page": f"pages end at result {depth} (the depth); this one starts past it"}
            )
        return attrs

    def text_query(self) -> text_search.TextQuery:
        data = self.validated_data
        return text_search.TextQuery(
            text=data["q"],
            filters=self.shard_filter(),
            brand=data.get("brand"),
            mode=data["mode"],
            sort=data["sort"],
            page=data["page"],
            page_size=data["k"],
            facets=data["facets"],
        )


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


class FacetValueSerializer(serializers.Serializer):
    value = serializers.JSONField(help_text="what to filter by: a slug, a brand, a price range")
    label = serializers.CharField()
    count = serializers.IntegerField()
    min = serializers.IntegerField(required=False, help_text="price buckets only")
    max = serializers.IntegerField(
        required=False, allow_null=True, help_text="price buckets only; null: no upper bound"
    )


class FacetsSerializer(serializers.Serializer):
    category = FacetValueSerializer(many=True, required=False)
    brand = FacetValueSerializer(many=True, required=False)
    price = FacetValueSerializer(many=True, required=False)
    in_stock = FacetValueSerializer(many=True, required=False)


class TextSearchResponse(SearchResponse):
    """A page of a text search. `score` is a relevance in (0, 1] that falls down the list:
    (query words the product has + its fused rank's share) / (words + 1)."""

    page = serializers.IntegerField()
    pages = serializers.IntegerField(help_text="pages of `k` results the matched products fill")
    matched = serializers.IntegerField(help_text="products matched, at most `depth`")
    depth = serializers.IntegerField(help_text="how deep results can be paged")
    mode = serializers.ChoiceField(choices=MODES)
    sort = serializers.ChoiceField(choices=SORTS)
    facets = FacetsSerializer()


def _result(request: Request, hit: search.Hit, staff: bool) -> dict:
    """A hit with absolute media URLs, and the image that matched (the product's first
    image if that one has gone since)."""
    product = card_for_viewer(hit.product, request, staff=staff)
    images = product["images"]
    chosen = next((i for i in images if i["id"] == hit.image_id), images[0] if images else None)
    url = chosen["url"] if chosen else None
    return {"product": product, "score": round(hit.score, 6), "image": url}


def _respond(request: Request, page: search.SearchPage) -> Response:
    staff = is_staff(request)
    body = {
        "results": [_result(request, hit, staff) for hit in page.hits],
        "took_ms": round(page.took_ms, 2),
        "partial": page.partial,
        "shards": {"answered": page.answered, "total": page.total, "missing": list(page.missing)},
    }
    return Response(body)


_ERRORS = {
    400: OpenApiResponse(description="invalid parameters or unreadable image"),
    503: OpenApiResponse(description="no search worker (or encoder) answered"),
}


class SearchView(JsonGetView):
    permission_classes = [AllowAny]
    throttle_classes = [RedisWindowThrottle]
    throttle_scope = "search"
    parser_classes = [BoundedJSONParser, MultiPartParser, FormParser]

    def throttle_reads(self, request: Request) -> list[tuple[str, str]]:
        """The cards' epoch token, read in the rate limit's round trip (see `cards`)."""
        return [product_cache.epoch_read()] if request.method == "POST" else []

    @extend_schema(
        parameters=[
            TextSearchQuery,
            OpenApiParameter(  # facets=brand,price: one parameter, comma-separated
                "facets",
                type=FACET_NAMES_SCHEMA,
                style="form",
                explode=False,
                description="facets to count over the matched products (default: all; empty: none)",
            ),
        ],
        responses={200: TextSearchResponse, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Text search: by default the words (SKU, brand, title, description) and the CLIP
        ranking fused; a product whose SKU is the query comes first. Facets count the
        matched products; `page` and `k` cut a page out of them, stable across requests.
        A query parameter not listed here (or one given twice) is a 400 `unknown_parameter`
        naming it."""
        check_parameters(request, query=field_names(TextSearchQuery))
        query = TextSearchQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        text_query = query.text_query()
        found = text_search.text_search(text_query)
        staff = is_staff(request)
        body = {
            "results": [_result(request, hit, staff) for hit in found.hits],
            "took_ms": round(found.took_ms, 2),
            "partial": found.partial,
            "shards": {
                "answered": found.answered,
                "total": found.total,
                "missing": list(found.missing),
            },
            "page": text_query.page,
            "pages": -(-found.matched // text_query.page_size),
            "matched": found.matched,
            "depth": found.depth,
            "mode": text_query.mode,
            "sort": text_query.sort,
            "facets": found.facets,
        }
        return Response(body)

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
        replies = getattr(request, "read_with_throttle", None)
        page = search.search(vector, k=data["k"], filters=filters, replies=replies)
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


class SimilarView(JsonGetView):
    permission_classes = [AllowAny]
    throttle_classes = [RedisWindowThrottle]
    throttle_scope = "search"

    def throttle_reads(self, request: Request) -> list[tuple[str, str]]:
        """The product's cached vector and the cards' epoch token, read in the rate
        limit's round trip."""
        return [product_cache.vector_read(self.kwargs["pk"]), product_cache.epoch_read()]

    @extend_schema(
        parameters=[SearchFilters], responses={200: SearchResponse, 404: None, **_ERRORS}
    )
    def get(self, request: Request, pk: int) -> Response:
        """More like this product, from its stored embedding (no re-encoding). A query
        parameter not listed here (or one given twice) is a 400 `unknown_parameter`."""
        check_parameters(request, query=field_names(SearchFilters))
        query = _similar_filters(tuple(request.query_params.items()))
        filters = _shard_filter(query)
        replies = getattr(request, "read_with_throttle", None)
        vector = search.product_vector(pk, replies)
        page = search.search(
            vector, k=query["k"], filters=filters, exclude_product=pk, replies=replies
        )
        return _respond(request, page)
