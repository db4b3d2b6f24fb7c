"""Saves and deletes that change what a search shows forget the products' cached cards."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from catalog.card_invalidation import forget
from catalog.models import Category, Embedding, Product, ProductImage


@receiver([post_save, post_delete], sender=Product)
def _product_changed(sender: type, instance: Product, **kwargs: object) -> None:
    forget([instance.pk])


@receiver([post_save, post_delete], sender=ProductImage)
def _image_changed(sender: type, instance: ProductImage, **kwargs: object) -> None:
    forget([instance.product_id])


@receiver([post_save, post_delete], sender=Embedding)
def _embedding_changed(sender: type, instance: Embedding, **kwargs: object) -> None:
    product_id = ProductImage.objects.filter(pk=instance.image_id).values_list(
        "product_id", flat=True
    )
    forget(product_id)


@receiver(post_save, sender=Category)
@receiver(pre_delete, sender=Category)  # its products' category is set to null without signals
def _category_changed(sender: type, instance: Category, **kwargs: object) -> None:
    forget(Product.objects.filter(category_id=instance.pk).values_list("pk", flat=True))
