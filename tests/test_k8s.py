"""deploy/k8s/ cannot be applied here (no cluster): keep it honest by reading it.

Every manifest is validated offline against Kubernetes' own schemas (kubernetes-validate),
and what the manifests ask of the code is checked against the code: the commands, modules
and queues they run, the variables they set, the ports and paths the probes use.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.support.commands import check_command, option
from workers.queues import shard_queue

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
# The oldest Kubernetes these manifests are meant for, and the newest schema the package has.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
APP_IMAGES = ("visual-product-search:", "visual-product-search-gpu:")


def _documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


RESOURCES = [doc for name in KUSTOMIZATION["resources"] for doc in _documents(name)]
SECRETS = {doc["metadata"]["name"]: doc for doc in _documents("secret.example.yaml")}
WORKLOADS = [doc for doc in RESOURCES if doc["kind"] in ("Deployment", "StatefulSet", "Job")]


def _find(kind: str, name: str) -> dict:
    (found,) = [d for d in RESOURCES if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _pod(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def _containers(workload: dict) -> list[dict]:
    pod = _pod(workload)
    return [*pod.get("initContainers", []), *pod["containers"]]


CONFIG = _find("ConfigMap", "app-config")["data"]
APP_CONTAINERS = {
    f"{w['metadata']['name']}/{c['name']}": c
    for w in WORKLOADS
    for c in _containers(w)
    if c["image"].startswith(APP_IMAGES)
}


def _port(container: dict, port: int | str) -> int:
    """A probe's port as a number: named ports are the container's."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


def _shard_sets() -> list[dict]:
    return [
        w
        for w in WORKLOADS
        if any(
            (option(c.get("command", []), "-Q") or "").startswith("shard.") for c in _containers(w)
        )
    ]


# --- The files and their schemas ---


def test_kustomization_lists_every_manifest_but_the_secret_example():
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk - {"secret.example.yaml"}
    assert not any(doc["kind"] == "Secret" for doc in RESOURCES)  # secrets are never committed


@pytest.mark.parametrize(
    "doc",
    [*RESOURCES, *SECRETS.values()],
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}",
)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_kubernetes_objects(doc, version):
    """Strict: an unknown field (a misspelt `readinessProbe`) is an error, not ignored."""
    kubernetes_validate.validate(doc, version, strict=True)


# --- What the manifests ask of the code ---


@pytest.mark.parametrize("name", sorted(APP_CONTAINERS))
def test_app_commands_name_real_modules_commands_and_queues(name):
    command = APP_CONTAINERS[name]["command"]
    if command[:2] == ["sh", "-c"]:  # a wait loop around a management command
        inner = re.findall(r"python manage\.py \S+", command[2])
        assert inner, command
        for part in inner:
            check_command(part.split())
    else:
        check_command(command)


@functools.cache
def _source() -> str:
    tops = ("searchsite", "catalog", "workers")
    return "\n".join(p.read_text() for top in tops for p in (ROOT / top).rglob("*.py"))


def _code_reads(name: str) -> bool:
    """Whether the code reads `name`: a literal argument of a call or a subscript
    (env.str("X"), os.environ.get("X"), os.environ["X"], _env_int("X"), ...)."""
    return re.search(rf"""[(\[]\s*["']{re.escape(name)}["']""", _source()) is not None


# Read by a library, not by this code.
READ_BY_LIBRARIES = {
    "AWS_ACCESS_KEY_ID": "boto3 and s3fs (media and index stores)",
    "AWS_SECRET_ACCESS_KEY": "boto3 and s3fs",
    "AWS_DEFAULT_REGION": "boto3 and s3fs",
    "FLOWER_BASIC_AUTH": "flower reads its FLOWER_* options",
}


def _app_variable_names() -> set[str]:
    names = set(CONFIG) | set(SECRETS["app-secrets"]["stringData"])
    for container in APP_CONTAINERS.values():
        names |= {entry["name"] for entry in container.get("env", [])}
    return names


@pytest.mark.parametrize("name", sorted(_app_variable_names()))
def test_every_variable_the_app_is_given_is_read_by_the_code(name):
    if name in READ_BY_LIBRARIES:
        return
    assert _code_reads(name), f"{name} is set in deploy/k8s but nothing reads it"


def test_every_app_container_gets_the_config_and_the_app_secrets():
    for name, container in APP_CONTAINERS.items():
        sources = container.get("envFrom", [])
        assert {"configMapRef": {"name": "app-config"}} in sources, name
        assert {"secretRef": {"name": "app-secrets"}} in sources, name
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert CONFIG["PROMETHEUS_MULTIPROC_DIR"] in mounts, name  # writable, per pod


def test_the_configuration_boots_the_settings_in_production_mode(tmp_path):
    """ConfigMap and the example Secret, as a pod would get them: `check --deploy` passes."""
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    env.update(CONFIG)
    env.update(SECRETS["app-secrets"]["stringData"])
    env.update(DATA_DIR=str(tmp_path), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"))
    env.update(INDEX_DIR=str(tmp_path / "index"))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stores_are_buckets_with_credentials_from_the_secret():
    from searchsite.media_storage import media_storage

    assert CONFIG["INDEX_STORE_URL"].startswith("s3://")
    assert media_storage(CONFIG)["BACKEND"] == "storages.backends.s3.S3Storage"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(
        SECRETS["app-secrets"]["stringData"]
    )


# --- Secrets ---

SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|DSN|_KEY|AUTH|DATABASE_URL|REDIS_URL")


def test_no_secret_is_written_in_the_manifests():
    assert not [name for name in CONFIG if SECRET_NAME.search(name)]
    for workload in WORKLOADS:
        for container in _containers(workload):
            for entry in container.get("env", []):
                if SECRET_NAME.search(entry["name"]):
                    assert "secretKeyRef" in entry["valueFrom"], entry
    for secret in SECRETS.values():
        for key, value in secret["stringData"].items():
            assert value == "" or "change-me" in value, f"{key}: not a placeholder"


# --- Roles ---


def test_each_shard_has_a_stateful_set_consuming_its_own_queue():
    from django.conf import settings

    assert int(CONFIG["SEARCH_SHARDS"]) == settings.SEARCH_SHARDS
    queues = []
    for shard_set in _shard_sets():
        assert shard_set["kind"] == "StatefulSet"
        (worker,) = _pod(shard_set)["containers"]
        queue = option(worker["command"], "-Q")
        assert "," not in queue, f"{shard_set['metadata']['name']} serves several queues"
        assert shard_set["metadata"]["name"].endswith(queue.removeprefix("shard."))
        queues.append(queue)
    assert sorted(queues) == [shard_queue(i) for i in range(int(CONFIG["SEARCH_SHARDS"]))]


@pytest.mark.parametrize("shard_set", _shard_sets(), ids=lambda w: w["metadata"]["name"])
def test_a_shard_replica_has_its_own_index_volume_and_name(shard_set):
    (worker,) = _pod(shard_set)["containers"]
    (claim,) = shard_set["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == CONFIG["INDEX_DIR"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # never shared
    (replica_host,) = [e for e in worker["env"] if e["name"] == "REPLICA_HOST"]
    assert replica_host["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    governing = _find("Service", shard_set["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("shard_set", _shard_sets(), ids=lambda w: w["metadata"]["name"])
def test_shard_probes_ask_the_worker_metrics_port(shard_set):
    (worker,) = _pod(shard_set)["containers"]
    metrics_port = int(CONFIG["WORKER_METRICS_PORT"])
    assert CONFIG["WORKER_METRICS_ADDR"] == "0.0.0.0"  # the kubelet probes from outside the pod
    probes = {
        "readinessProbe": "/ready",
        "livenessProbe": "/live",
        "startupProbe": "/live",
    }
    for probe, path in probes.items():
        get = worker[probe]["httpGet"]
        assert get["path"] == path, probe
        assert _port(worker, get["port"]) == metrics_port, probe


def test_the_probed_paths_are_the_ones_the_workers_serve():
    from workers.observability.readiness import with_readiness

    class NotReady:
        def status(self) -> tuple[bool, str]:
            return False, "replaying the log"

    app = with_readiness(lambda environ, start: [b"metrics"], {0: NotReady()})
    answers = {}
    for path in ("/ready", "/live"):
        app({"PATH_INFO": path}, lambda status, headers, path=path: answers.update({path: status}))
    assert answers == {"/ready": "503 Service Unavailable", "/live": "200 OK"}


def test_encode_worker_gets_a_gpu_on_a_gpu_node():
    encode = _find("Deployment", "encode-worker")
    pod = _pod(encode)
    (worker,) = pod["containers"]
    assert set(option(worker["command"], "-Q").split(",")) == {"encode", "celery"}
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_beat_is_a_singleton():
    beats = [w for w in WORKLOADS for c in _containers(w) if c.get("command", [])[3:4] == ["beat"]]
    assert [w["metadata"]["name"] for w in beats] == ["beat"]
    (beat,) = beats
    assert beat["kind"] == "Deployment"
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_migrations_run_in_a_job_and_the_web_waits_for_them():
    (migrate,) = _find("Job", "migrate")["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    (wait,) = _pod(_find("Deployment", "web"))["initContainers"]
    assert "manage.py migrate --check" in " ".join(wait["command"])


def test_web_is_probed_on_the_health_view_with_an_allowed_host():
    from django.urls import resolve

    (web,) = _pod(_find("Deployment", "web"))["containers"]
    get = web["readinessProbe"]["httpGet"]
    assert resolve(get["path"]).view_name == "health"
    (host,) = [h["value"] for h in get["httpHeaders"] if h["name"] == "Host"]
    assert host in CONFIG["ALLOWED_HOSTS"].split(",")
    assert _port(web, get["port"]) == int(option(web["command"], "--bind").rsplit(":", 1)[1])


def test_flower_takes_basic_auth_from_a_secret():
    (flower,) = _pod(_find("Deployment", "flower"))["containers"]
    (auth,) = [e for e in flower["env"] if e["name"] == "FLOWER_BASIC_AUTH"]
    assert auth["valueFrom"]["secretKeyRef"]["name"] in SECRETS
    assert not any("basic" in part for part in flower["command"])  # never in `ps`


# --- Exposure ---


def test_nothing_but_the_proxy_is_reachable_from_outside_the_cluster():
    assert not [d for d in RESOURCES if d["kind"] == "Ingress"]
    outside = [
        d
        for d in RESOURCES
        if d["kind"] == "Service" and d["spec"].get("type", "ClusterIP") != "ClusterIP"
    ]
    assert [d["metadata"]["name"] for d in outside] == ["nginx"]
    (proxy,) = outside
    assert proxy["spec"]["type"] == "LoadBalancer"
    # The client's own address reaches nginx (the rate limits' client), not a node's.
    assert proxy["spec"]["externalTrafficPolicy"] == "Local"
    assert proxy["spec"]["selector"] == {"app.kubernetes.io/name": "nginx"}
    for workload in WORKLOADS:
        pod = _pod(workload)
        assert not pod.get("hostNetwork"), workload["metadata"]["name"]
        for container in _containers(workload):
            assert not any("hostPort" in p for p in container.get("ports", []))


def test_nginx_runs_deploy_nginx_conf_in_front_of_the_web_service():
    conf = _find("ConfigMap", "nginx-conf")["data"]["default.conf"]
    assert conf == (ROOT / "deploy" / "nginx.conf").read_text()
    (nginx,) = _pod(_find("Deployment", "nginx"))["containers"]
    (mount,) = nginx["volumeMounts"]
    assert mount["mountPath"] == "/etc/nginx/conf.d"
    (volume,) = _pod(_find("Deployment", "nginx"))["volumes"]
    assert volume["configMap"]["name"] == "nginx-conf"
    upstream = re.search(r"server (\S+):(\d+);", conf)
    web = _find("Service", upstream.group(1))
    assert int(upstream.group(2)) in [p["port"] for p in web["spec"]["ports"]]
    assert CONFIG["TRUSTED_PROXIES"] == "1"


# --- Redis through Sentinel ---


def test_redis_url_names_the_sentinels_and_the_master_they_watch():
    url = SECRETS["app-secrets"]["stringData"]["REDIS_URL"]
    parts = urlsplit(url)
    assert parts.scheme == "redis+sentinel"
    auth, hosts = parts.netloc.rsplit("@", 1)
    assert auth == ":" + SECRETS["redis-auth"]["stringData"]["REDIS_PASSWORD"]
    master, db = parts.path.strip("/").split("/")
    sentinels = _find("StatefulSet", "sentinel")
    service = sentinels["spec"]["serviceName"]
    assert hosts.split(",") == [
        f"sentinel-{i}.{service}:26379" for i in range(sentinels["spec"]["replicas"])
    ]
    assert _find("Service", service)["spec"]["clusterIP"] == "None"
    scripts = _find("ConfigMap", "redis-scripts")["data"]
    assert f"sentinel monitor {master} " in scripts["sentinel.sh"]
    assert db == "0"
    assert (
        SECRETS["app-secrets"]["stringData"]["SENTINEL_PASSWORD"]
        == SECRETS["redis-auth"]["stringData"]["SENTINEL_PASSWORD"]
    )


def test_redis_keeps_the_update_logs():
    """Append-only persistence on its own volume, never an eviction policy (the logs have no
    TTL), hz 100 (README.md), and a password on the servers and the sentinels."""
    scripts = _find("ConfigMap", "redis-scripts")["data"]
    for line in ("appendonly yes", "hz 100", "requirepass $REDIS_PASSWORD"):
        assert line in scripts["redis.sh"]
    assert "maxmemory-policy" not in scripts["redis.sh"]
    assert "requirepass $SENTINEL_PASSWORD" in scripts["sentinel.sh"]
    redis = _find("StatefulSet", "redis")
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    (server,) = _pod(redis)["containers"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in server["volumeMounts"]
