# The README's two commands, as make targets. Each builds .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := pipeline jobs schemas

.PHONY: demo test test-fast lint format schema docs clean

$(BIN)/tierline: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/tierline
	$(BIN)/tierline run jobs/examples/classify.yaml

# Everything CI runs: lint, then the whole suite (it starts its own S3 server and Ray).
test: lint
	$(BIN)/pytest

# Style, types and the layer contracts (pyproject.toml: [tool.importlinter]).
lint: $(BIN)/tierline
	$(BIN)/ruff check $(PACKAGES) tests
	$(BIN)/ruff format --check $(PACKAGES) tests
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/lint-imports

# The unit tests only: no Ray, no network; under a minute.
test-fast: $(BIN)/tierline
	$(BIN)/pytest tests/unit -q

format: $(BIN)/tierline
	$(BIN)/ruff check --fix $(PACKAGES) tests
	$(BIN)/ruff format $(PACKAGES) tests

schema: $(BIN)/tierline
	$(BIN)/tierline schema --out schemas/job.schema.json

# The spec's JSON Schema and the README's configuration reference, from the models.
docs: schema
	$(BIN)/python -m schemas.export

clean:
	rm -rf $(VENV) tierline-out .pytest_cache
