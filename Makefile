# The whole set-up is these targets: they create .venv and install relance into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test up lint bench clean lock

$(BIN)/relance: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/relance

demo: $(BIN)/relance
	$(BIN)/relance demo

up: $(BIN)/relance
	$(BIN)/relance up

# Unit and integration tests in parallel (each worker has its own PostgreSQL database and
# Redis database); the end-to-end tests, which run whole stacks and time them, one at a time;
# the fault tests (each owns its servers, and mostly waits for reply windows) two at a time.
test: $(BIN)/relance
	$(BIN)/pytest -m "not e2e" -n auto --maxprocesses 4
	$(BIN)/pytest -m e2e --ignore tests/e2e/test_faults.py
	$(BIN)/pytest tests/e2e/test_faults.py -n 2

lint: $(BIN)/relance
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src tests

bench: $(BIN)/relance
	$(BIN)/relance bench --json bench-report.json

# The image's pinned dependencies (Dockerfile): every version and hash, from pyproject.toml.
lock:
	$(PYTHON) -m venv /tmp/relance-lock && /tmp/relance-lock/bin/pip install --quiet pip-tools
	/tmp/relance-lock/bin/pip-compile --quiet --generate-hashes --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .relance
