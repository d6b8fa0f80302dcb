# The two commands of the README: `make run` and `make test`. Both build .venv when it is missing.
PY ?= python3
# where `make run` listens: `make run TCP=5003` when 5002 is taken
TCP ?= 127.0.0.1:5002
VENV := .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.installed
DEV := $(VENV)/.installed-dev

.PHONY: run test lint clean

# railtix and what it needs to run
$(BASE): pyproject.toml
	@echo "railtix: installing railtix and what it needs into $(VENV) (the first time: about a minute, from PyPI)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BASE)

# and the tools to test it
$(DEV): $(BASE)
	@echo "railtix: installing the test tools into $(VENV)"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV)

run: $(BASE)
	@echo "railtix: in another terminal, '. .venv/bin/activate' puts the railtix command on your PATH"
	$(BIN)/railtix serve --tcp '$(TCP)'

test: $(DEV)
	$(BIN)/python -m pytest

lint: $(DEV)
	$(BIN)/ruff check railtix tests
	$(BIN)/mypy railtix

clean:
	rm -rf $(VENV) build *.egg-info
