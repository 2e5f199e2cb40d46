# The README's two commands, as make targets. Each builds .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint schema docs clean

$(BIN)/tierline: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/tierline
	$(BIN)/tierline run jobs/examples/classify.yaml

test: $(BIN)/tierline
	$(BIN)/ruff check pipeline jobs schemas tests
	$(BIN)/mypy pipeline jobs schemas
	$(BIN)/pytest

schema: $(BIN)/tierline
	$(BIN)/tierline schema --out schemas/job.schema.json

# The spec's JSON Schema and the README's configuration reference, from the models.
docs: schema
	$(BIN)/python -m schemas.export

clean:
	rm -rf $(VENV) tierline-out .pytest_cache
