#!/usr/bin/env bash
# The GPU backend's check on a machine with an NVIDIA GPU (issue 22, item 8), in under
# 10 minutes: a virtualenv with the project's dependencies and faiss-gpu-cu12 in place of
# faiss-cpu, the GPU backend's tests, then GPU-vs-CPU batch search at 1M vectors.
#
#   bash bench/gpu_check.sh              # from the repository root or anywhere
#   VENV=/tmp/v QUICK=1 bash bench/gpu_check.sh   # 200k x 128 instead of 1M x 512
#
# Prints each step's result; the last line is the benchmark's summary. Exits non-zero
# when faiss finds no GPU or a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
PYTHON=${PYTHON:-python3}
started=$(date +%s)
step() { echo "== $(( $(date +%s) - started ))s: $*"; }

step "virtualenv $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# The CPU build of torch first (the index needs none; the project imports it elsewhere),
# so no requirement pulls a CUDA torch of several GB.
"${PIP[@]}" "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
  || "${PIP[@]}" "torch>=2.3,<2.14"
step "the project and its test dependencies"
"${PIP[@]}" -e ".[dev]"
# faiss-gpu-cu12 provides the same `faiss` module as faiss-cpu: swap one for the other.
step "faiss-gpu-cu12 in place of faiss-cpu"
"$VENV/bin/python" -m pip uninstall --quiet --yes faiss-cpu
"${PIP[@]}" "faiss-gpu-cu12>=1.11,<1.14"
"$VENV/bin/python" - <<'PY'
import faiss
n = faiss.get_num_gpus()
print(f"faiss {faiss.__version__}: {n} GPU(s); CAGRA {'yes' if hasattr(faiss, 'GpuIndexCagra') else 'no'}")
raise SystemExit(0 if n > 0 else "faiss finds no GPU")
PY
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

step "the GPU backend's tests (and the shard's, which must pass with a GPU copy too)"
failed=0
FAISS_SEARCH_THREADS=1 timeout 240 "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  tests/workers/index/test_gpu.py tests/workers/index/test_compaction.py \
  tests/workers/index/test_shard.py || failed=1

step "GPU against CPU, batched searches"
if [ "${QUICK:-0}" = 1 ]; then
  timeout 300 "$VENV/bin/python" bench/gpu_bench.py --quick
else
  timeout 420 "$VENV/bin/python" bench/gpu_bench.py
fi
step "done"
exit "$failed"
