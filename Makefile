# Two commands do everything (README): `make study` reruns the study, `make test` runs all tests.
# Both create the environment in .venv when it is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= smoke
KERNEL := pspnet-study

.PHONY: env study test lint bench clean-generated

env: $(VENV)/.installed

# The grep drops pip's notes about local index folders a machine lacks; pip's own exit status
# still fails the recipe (pipefail).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -e '.[test]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "PSPNet study (.venv)"
	touch $@

study: env
	$(PY) -m pspnet_core.study --params $(PRESET)

test: env
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg tests notebooks

bench: env
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-generated:
	rm -rf data runs outputs
