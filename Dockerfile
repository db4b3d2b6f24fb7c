# One image for every process (web, workers, beat, flower); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data MEDIA_ROOT=/data/media INDEX_DIR=/data/index STATIC_ROOT=/app/static

WORKDIR /app
# CPU torch first so the project's torch range is already met (no CUDA download);
# GPU hosts build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install "torch==2.13.0" --index-url ${TORCH_INDEX}
COPY pyproject.toml README.md ./
COPY searchsite searchsite
COPY catalog catalog
COPY workers workers
COPY manage.py ./
RUN pip install .
RUN DEBUG=true python manage.py collectstatic --noinput

RUN useradd --create-home app && mkdir -p /data && chown app /data
USER app
EXPOSE 8000
CMD ["gunicorn", "searchsite.wsgi", "-c", "python:workers.observability.gunicorn_hooks", "--bind", "0.0.0.0:8000", "--workers", "4"]
