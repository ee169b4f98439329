# The whole set-up is these targets: they create .venv and install relance into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test up lint bench clean

$(BIN)/relance: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/relance

demo: $(BIN)/relance
	$(BIN)/relance demo

up: $(BIN)/relance
	$(BIN)/relance up

test: $(BIN)/relance
	$(BIN)/pytest

lint: $(BIN)/relance
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src tests

bench: $(BIN)/relance
	$(BIN)/relance bench --json bench-report.json

clean:
	rm -rf $(VENV) .relance
