from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.health import health_report

_HealthSerializer = inline_serializer(
    "Health",
    fields={
        "status": serializers.CharField(),
        "reasons": serializers.ListField(child=serializers.CharField()),
        "database": serializers.DictField(required=False),
        "redis": serializers.DictField(required=False),
        "celery": serializers.DictField(required=False),
    },
)


class HealthView(APIView):
    """200 when the web can serve (database and Redis answer), 503 with reasons when not.

    Anyone (a load balancer) gets the status and the reasons; staff also get the
    details: timings, errors and the Celery workers seen by queue.
    """

    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(responses={200: _HealthSerializer, 503: _HealthSerializer})
    def get(self, request: Request) -> Response:
        healthy, report = health_report()
        if not (request.user and request.user.is_staff):
            report = {"status": report["status"], "reasons": report["reasons"]}
        return Response(report, status=200 if healthy else 503)
