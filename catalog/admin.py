"""The catalog admin: where people manage products and watch their index state."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.files.uploadedfile import UploadedFile
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from catalog.errors import ServiceError
from catalog.models import Category, Product, ProductImage
from catalog.services import images as image_services
from catalog.services import products as product_services


class ProductImageForm(forms.ModelForm):
    """Admin uploads pass the same checks as API uploads (size, pixels, format)."""

    class Meta:
        model = ProductImage
        fields = ["image", "source_url", "position"]

    def clean_image(self) -> object:
        upload = self.cleaned_data.get("image")
        if isinstance(upload, UploadedFile):
            try:
                loaded = image_services.check_upload(upload)
            except ServiceError as exc:
                raise forms.ValidationError(exc.message) from exc
            self.instance.sha256 = loaded.sha256
            self.instance.width, self.instance.height = loaded.width, loaded.height
            if self.instance.product_id and _has_upload(self.instance, loaded.sha256):
                raise forms.ValidationError("This product already has this image.")
        return upload


def _has_upload(image: ProductImage, sha256: str) -> bool:
    """The product's other uploads hold these bytes (its unique_upload_per_product constraint)."""
    others = ProductImage.objects.filter(product_id=image.product_id, sha256=sha256, source_url="")
    return others.exclude(pk=image.pk).exists() if image.pk else others.exists()


class ProductImageFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        """The same file twice in one submission would break the constraint at save."""
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            if not form.has_changed() or form.cleaned_data.get("DELETE"):
                continue
            if isinstance(form.cleaned_data.get("image"), UploadedFile):
                if form.instance.sha256 in seen:
                    raise forms.ValidationError("The same image is uploaded twice.")
                seen.add(form.instance.sha256)


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    form = ProductImageForm
    formset = ProductImageFormSet
    extra = 0
    fields = ["preview", "image", "source_url", "position", "width", "height", "sha256", "error"]
    readonly_fields = ["preview", "width", "height", "sha256", "error"]

    @admin.display(description="Preview")
    def preview(self, obj: ProductImage) -> str:
        url = obj.image.url if obj.image else obj.source_url
        if not url:
            return "-"
        return format_html('<img src="{}" style="height:64px;border-radius:4px">', url)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "parent"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = [
        "thumbnail",
        "sku",
        "title",
        "category",
        "price",
        "currency",
        "in_stock",
        "is_active",
        "index_state",
    ]
    list_display_links = ["sku", "title"]
    list_filter = ["index_state", "category", "in_stock", "is_active", "brand"]
    search_fields = ["title", "sku"]
    list_select_related = ["category"]
    readonly_fields = ["index_state", "index_state_at", "index_error", "created_at", "updated_at"]
    inlines = [ProductImageInline]
    actions = ["reencode_selected", "remove_from_index"]
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return super().get_queryset(request).prefetch_related("images")

    @admin.display(description="Image")
    def thumbnail(self, obj: Product) -> str:
        images = list(obj.images.all())
        if not images:
            return "-"
        first = images[0]
        url = first.image.url if first.image else first.source_url
        return format_html('<img src="{}" style="height:40px;border-radius:3px">', url)

    def save_model(self, request, obj, form, change) -> None:
        """Admin edits go through the same services as the API, so they reach the index."""
        if change:
            changes = {
                f: form.cleaned_data[f]
                for f in form.changed_data
                if f in product_services.EDITABLE_FIELDS
            }
            product_services.product_update(product=obj, **changes)
        else:
            fields = {
                f: form.cleaned_data[f]
                for f in product_services.EDITABLE_FIELDS
                if f in form.cleaned_data
            }
            created = product_services.product_create(**fields)
            obj.pk, obj._state.adding = created.pk, False

    def save_formset(self, request, form, formset, change) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is ProductImage and (
            formset.new_objects or formset.changed_objects or formset.deleted_objects
        ):
            product_services.products_reencode(product_ids=[form.instance.pk])

    def delete_model(self, request, obj: Product) -> None:
        product_services.product_delete(product=obj)

    @admin.action(description="Re-encode selected products")
    def reencode_selected(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        count = product_services.products_reencode(
            product_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(request, f"{count} product(s) queued for encoding.", messages.SUCCESS)

    @admin.action(description="Remove selected products from the index")
    def remove_from_index(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        count = product_services.products_remove_from_index(
            product_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(request, f"{count} product(s) removed from the index.", messages.SUCCESS)


# The admin index links to the Search health page (catalog/admin_views.py).
admin.site.index_template = "admin/index_with_search.html"
admin.site.site_header = "Visual product search"
