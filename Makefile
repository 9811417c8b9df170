# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The service's own dependencies, what production machines install; and those with the
# development and test tools, the same versions of the same files.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock

.PHONY: run test install install-dev lint lock audit soak-short soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The service and its tests run on exactly the locked versions that `make audit` checks (the
# locks' hashes make pip install only those exact files).
install: $(BIN)/python
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check

# Refresh the locks: the newest releases that pyproject.toml (dependencies + dev extra) allows, with
# their hashes (pip then installs only those exact files); then the service's own, the same
# releases (pip-compile keeps the pins of the file it writes over).
COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
  --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock: $(BIN)/python
	$(BIN)/pip install --quiet pip-tools
	$(COMPILE) --upgrade --extra dev -o $(DEV_LOCK) pyproject.toml
	cp $(DEV_LOCK) $(LOCK)
	$(COMPILE) -o $(LOCK) pyproject.toml

# Known vulnerabilities of the locked releases (PyPI's vulnerability data, via pip-audit; the
# development lock holds every release of the service's own).
audit: install-dev
	$(BIN)/python scripts/audit.py --no-deps --disable-pip --progress-spinner off -r $(DEV_LOCK)

run: install
	$(BIN)/gateway run --host 127.0.0.1 --port 5000

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest processes of `make test`: one per core, but one in all when GATEWAY_TEST_REDIS_URL names the
# single Redis database every process would flush.
PYTEST_WORKERS ?= $(if $(GATEWAY_TEST_REDIS_URL),0,auto)

test: install-dev audit
	bash scripts/services.sh
	bash scripts/chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile
	$(MAKE) soak-short

# The chaos soak (docs/benchmarks.md, "Soak"): its exit status is the check of every invariant.
soak-short: install-dev
	$(BIN)/python bench/soak.py --minutes 2 --certifications 2000

soak: install-dev
	$(BIN)/python bench/soak.py --minutes 30 --certifications 20000
