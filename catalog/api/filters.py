import django_filters
from django.db.models import QuerySet

from catalog.api.representation import STAFF_ONLY_PRODUCT_FIELDS, is_staff
from catalog.models import Product
from catalog.selectors import equal_in_any_case


class ProductFilter(django_filters.FilterSet):
    category = django_filters.CharFilter(field_name="category__slug")
    brand = django_filters.CharFilter(method="brand_in_any_case")
    min_price = django_filters.NumberFilter(field_name="price", lookup_expr="gte")
    max_price = django_filters.NumberFilter(field_name="price", lookup_expr="lte")

    class Meta:
        model = Product
        fields = ["category", "brand", "in_stock", "is_active", "index_state"]

    def brand_in_any_case(self, products: QuerySet, name: str, value: str) -> QuerySet:
        return equal_in_any_case(products, "brand", value)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if not is_staff(self.request):  # filtering by a staff-only field would reveal it
            for name in STAFF_ONLY_PRODUCT_FIELDS:
                self.filters.pop(name, None)
