# The README's two commands, as make targets. Each builds .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := pipeline jobs schemas

.PHONY: demo test test-fast lint format schema docs gateway clean

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

# LiteLLM's proxy in a venv of its own, for the test of a job through a real gateway
# (tests/integration/test_litellm_proxy.py skips without it).
GATEWAY := .venv-gateway
GATEWAY_REQUIREMENTS := tests/integration/gateway-requirements.txt

$(GATEWAY)/bin/litellm: $(GATEWAY_REQUIREMENTS)
	rm -rf $(GATEWAY)
	$(PY) -m venv $(GATEWAY)
	$(GATEWAY)/bin/pip install -q -r $(GATEWAY_REQUIREMENTS) || (rm -rf $(GATEWAY); exit 1)
	touch $@

gateway: $(GATEWAY)/bin/litellm

format: $(BIN)/tierline
	$(BIN)/ruff check --fix $(PACKAGES) tests
	$(BIN)/ruff format $(PACKAGES) tests

schema: $(BIN)/tierline
	$(BIN)/tierline schema --out schemas/job.schema.json

# The spec's JSON Schema and the README's configuration reference, from the models.
docs: schema
	$(BIN)/python -m schemas.export

clean:
	rm -rf $(VENV) $(GATEWAY) tierline-out .pytest_cache
