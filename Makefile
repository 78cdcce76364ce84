# Two commands do everything (README): `make study` reruns the study, `make test` runs all tests.
# Both create the environment in .venv when it is missing.
SHELL := /bin/bash
# prerequisites in parallel (`make test`: the venv's pip install beside browser-deps' apt-get;
# both are quiet, so their lines do not mix; no --output-sync, which would hold back the test
# recipe's output until it ends)
MAKEFLAGS += --jobs=2
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= smoke
KERNEL := pspnet-study

# Every transitive dependency of `.[test]`, pinned with == (pip-compile; `make lock` refreshes it).
LOCK := requirements.lock
PIP_TOOLS := $(VENV)/pip-tools

.PHONY: env lock browser-deps study notebooks test test-notebooks test-fast fuzz paper-dry lint bench clean-generated

env: $(VENV)/.installed

# Installs exactly the lock, then the project itself without resolving again (--no-deps).
# The grep drops pip's notes about local index folders a machine lacks; pip's own exit status
# still fails the recipe (pipefail).
$(VENV)/.installed: $(LOCK) pyproject.toml notebooks/jupyterlab-overrides.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -r $(LOCK) 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PY) -m pip install --quiet --progress-bar off --no-deps -e . 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "PSPNet study (.venv)"
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp notebooks/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

# Re-resolves the lock from pyproject.toml ([project.dependencies] + the `test` extra) with
# pip-compile, in a venv of its own ($(PIP_TOOLS), made on demand) so the study's venv holds only
# the lock. Pins already in the lock are kept unless pyproject.toml rules them out; upgrade all with
# `make lock LOCK_FLAGS=--upgrade`, one with `LOCK_FLAGS="--upgrade-package pandas"`. It resolves
# through pip and its config, so torch/torchvision come from this machine's wheels (their nvidia-*
# dependencies are pinned too). Then `make env` installs the new lock.
LOCK_FLAGS ?=
lock:
	test -x $(PIP_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(PIP_TOOLS) && \
	  $(PIP_TOOLS)/bin/pip install --quiet --progress-bar off pip-tools==7.6.2; }
	CUSTOM_COMPILE_COMMAND="make lock" $(PIP_TOOLS)/bin/pip-compile --quiet --extra test \
	  --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) \
	  --output-file $(LOCK) pyproject.toml 2>&1 | { grep -v '^WARNING: Location' || true; }

study: env
	$(PY) -m pspnet_core.study --params $(PRESET)

# the study on smoke, then its executed notebooks stored over notebooks/ (for nbval and readers)
# and its results.csv made the reference (figures/smoke/results.csv) later reruns compare with
notebooks: env
	$(PY) -m pspnet_core.study --params smoke --store --update-reference

# The unit tests run on 2 pytest-xdist workers with one torch thread each (two 2-thread
# trainings on 2 cores wait on each other's OpenMP barriers; one thread each keeps every test
# process's numbers the same as in any other, as the tests compare runs they train themselves);
# a test file stays on one worker (--dist loadfile: its session fixture is trained once).
# Then `make test-notebooks`: nbval over the stored notebooks beside `make paper-dry`
# (tools/check_notebooks.py): the smoke grid the notebooks read is trained first by pspnet-train
# in two lanes of one torch thread each (the VOC PSPNet runs | the leaf run and U-Net, then
# paper-dry), so the lanes end about together and no notebook trains under nbval.
TEST_WORKERS ?= 2
test: env browser-deps
	@echo "== $$(date +%T) environment ready; ruff and lint-imports"
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	@echo "== $$(date +%T) unit tests"
	OMP_NUM_THREADS=1 PSPNET_PROGRESS_BARS=0 $(PY) -m pytest --durations=25 \
		-n $(TEST_WORKERS) --dist loadfile tests
	@echo "== $$(date +%T) notebooks (nbval) and paper-dry"
	$(MAKE) --no-print-directory test-notebooks
	@echo "== $$(date +%T) make test passed"

test-notebooks: env
	$(PY) tools/check_notebooks.py

# The edit loop: unit tests only (no training, no subprocesses, no notebooks: the tests marked
# `slow` are left out); `make test` still runs everything.
test-fast: env
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow" tests

# The fuzzers (tests/fuzz/: the preset loader, --set and every file reader) with the long
# Hypothesis profile: 2000 examples per test, random seeds, failures kept in .hypothesis/ and
# replayed first next time (`make test` runs the same tests with a fixed seed, ~40 examples).
fuzz: env
	HYPOTHESIS_PROFILE=fuzz OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) -q tests/fuzz

# The paper preset end to end at toy size, offline (tools/paper_dry.py; `make test` runs it): the
# preset unchanged except counts and input size (2 train / 2 held-out images in batches of 2,
# 1 epoch, 1 seed, all 7 runs at 161 px instead of 473: the 473 geometry is unit-tested) through
# every notebook via the study command, on generated VOC2012/leaf data at
# 500x375 and a generated ResNet50 file in the torch hub cache, all under outputs/paper-dry/
# (never runs/ or figures/). Fails naming each figure (fig01..fig15) or claims.md not written.
paper-dry: env
	$(PY) tools/paper_dry.py

# Debian's chromium + chromedriver for tests/test_browser.py (JupyterLab in a real browser);
# installed once when missing and apt-get can run (root: CI, the dev containers). Without them
# that test skips and says why.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium + chromium-driver (apt-get) for tests/test_browser.py"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver; } >/dev/null 2>&1 \
	  || echo "apt-get could not install chromium: tests/test_browser.py will skip"; \
	else echo "no chromium and no root apt-get: tests/test_browser.py will skip"; fi

bench: env
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-generated:
	rm -rf data runs outputs
