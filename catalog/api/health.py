from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.health import health_report

_ModelSerializer = inline_serializer(
    "HealthModel",
    fields={
        "name": serializers.CharField(),
        "dim": serializers.IntegerField(allow_null=True),
        "random_weights": serializers.BooleanField(
            allow_null=True, help_text="true: the offline demo model, results are not meaningful"
        ),
        "source": serializers.ChoiceField(
            choices=["encoder", "configured"],
            help_text="encoder: published by a running encode worker; configured: CLIP_MODEL "
            "(no encode worker has said yet)",
        ),
        "warning": serializers.CharField(allow_null=True),
    },
)
_HealthSerializer = inline_serializer(
    "Health",
    fields={
        "status": serializers.CharField(),
        "reasons": serializers.ListField(child=serializers.CharField()),
        "database": serializers.DictField(required=False),
        "redis": serializers.DictField(required=False),
        "celery": serializers.DictField(required=False),
        "model": _ModelSerializer,
    },
)


class HealthView(APIView):
    """200 when the web can serve (database and Redis answer), 503 with reasons when not.

    Anyone (a load balancer) gets the status, the reasons and the CLIP model in use; staff
    also get the details: timings, errors and the Celery workers seen by queue.
    """

    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(responses={200: _HealthSerializer, 503: _HealthSerializer})
    def get(self, request: Request) -> Response:
        healthy, report = health_report()
        if not (request.user and request.user.is_staff):
            report = {key: report[key] for key in ("status", "reasons", "model")}
        return Response(report, status=200 if healthy else 503)
