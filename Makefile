# The two commands that do everything on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
DEPS   := $(VENV)/.deps-installed
IO_MAP ?= io_maps/sim_home.toml

.PHONY: run test lint bench system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(DEPS): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

## run the controller on the simulated site until Ctrl-C
run: $(DEPS)
	$(VENV)/bin/ems run --io-map $(IO_MAP)

## install what the tests need (Python packages and Debian tools) and run them
test: $(DEPS) system-deps
	$(PY) -m pytest

## static checks: ruff (style, imports, common bugs) and mypy (types) on the packages
lint: $(DEPS)
	$(VENV)/bin/ruff check plc blocks programs sim runtime ems bench tests
	$(VENV)/bin/mypy

## benchmarks: each prints its figures next to a baseline measured in the same run
bench: $(DEPS) system-deps
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

system-deps:
	bash scripts/install-system-deps.sh

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
