# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS ?= 2

.PHONY: install viewer-assets demo test lint docs bench bench-env clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

# The viewer's deep-zoom library, from npm into a git-ignored folder. Without npm or the
# registry the rest still works: `mixsup view` says what is missing and its browser test skips.
OSD_VERSION := 5.0.1
OSD_DIR := src/mixsup/view/static/vendor/openseadragon

$(OSD_DIR)/openseadragon.min.js:
	@rm -rf build/osd && mkdir -p build/osd $(dir $(OSD_DIR))
	@(cd build/osd && npm pack --silent openseadragon@$(OSD_VERSION) >/dev/null \
	  && tar xzf openseadragon-$(OSD_VERSION).tgz \
	  && rm -rf ../../$(OSD_DIR) && mv package/build/openseadragon ../../$(OSD_DIR)) \
	  || echo "warning: could not fetch OpenSeadragon $(OSD_VERSION) with npm: 'mixsup view' will not start and its browser test skips (install Node.js + npm, then 'make viewer-assets')"
	@rm -rf build/osd

viewer-assets: $(OSD_DIR)/openseadragon.min.js

demo: $(STAMP) viewer-assets
	$(BIN)/mixsup demo --out demo-out

test: $(STAMP) viewer-assets
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

# The manual as a site (build/site), warnings as errors; the test suite builds it too.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Peer tools for the benchmarks live in their own environment, never in mixsup's.
.venv-bench/.installed: benchmarks/requirements-peer.txt
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet -r benchmarks/requirements-peer.txt
	touch $@

bench-env: .venv-bench/.installed

bench: $(STAMP) bench-env
	$(BIN)/python benchmarks/bench_tiling.py

clean:
	rm -rf $(VENV) .venv-bench demo-out .pytest_cache .ruff_cache src/mixsup/view/static/vendor
