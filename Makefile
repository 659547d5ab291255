# The testbed's entry points. Every target bootstraps .venv (pinned deps) and the data it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NAME ?= quickstart
SCALE ?=
NAMES ?= four-layer-bp four-layer-sg
SCALE_OPT := $(if $(SCALE),--scale $(SCALE),)
PYTEST := $(BIN)/python -m pytest

LOCK := requirements/dev.lock
COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --generate-hashes --python-version 3.11 --no-header --quiet

.PHONY: venv lock data experiment compare bench readme dashboard report test test-fast protos

venv: $(STAMP)

# every package pinned with its hashes (requirements/dev.lock), then this tree, editable
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

## make lock: re-resolve requirements/*.lock from pyproject.toml (uv, hashes, Linux x86_64 + aarch64)
lock: $(STAMP)
	$(COMPILE) --extra runtime --extra report --extra notebook --extra docker --extra dev -o requirements/dev.lock
	$(COMPILE) --extra runtime -c requirements/dev.lock -o requirements/worker.lock
	$(COMPILE) --extra runtime --extra report --extra docker -c requirements/dev.lock -o requirements/controller.lock
	$(COMPILE) --extra gpu -c requirements/dev.lock -o requirements/worker-gpu.lock

data: $(STAMP)
	$(BIN)/python -m testbed.data fetch mnist

## make experiment [NAME=quickstart] [SCALE=smoke]: run a spec from experiments/
## make experiment RESUME=results/<experiment>/<run-id>: continue an interrupted or failed run
experiment: data
	$(BIN)/testbed run $(if $(RESUME),--resume $(RESUME),$(NAME) $(SCALE_OPT))

## make compare NAMES="four-layer-bp four-layer-sg": overlay the latest runs
compare: $(STAMP)
	$(BIN)/testbed compare $(NAMES)

## make bench NAME=accuracy: benchmarks write results/bench/<name>.json and a figure
bench: data
	$(BIN)/testbed bench $(NAME)

## make readme: render README.md's headline table from results/bench/*.json
readme: $(STAMP)
	$(BIN)/python -m testbed.report.readme

## make dashboard [HOST=127.0.0.1] [PORT=8050]: the Flask dashboard over results/
dashboard: $(STAMP)
	$(BIN)/python -m testbed.dashboard --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),8050)

## make report: execute results/report.ipynb headless (nbclient), write results/report.html
report: $(STAMP)
	$(BIN)/python -m testbed.report.notebook

## make test: fast tier first, then the slow (real training), privileged and integration tiers
test: data
	$(BIN)/python -m testbed.runtime.wire.protogen --check
	$(PYTEST) -q -m "not slow and not privileged and not integration and not docker"
	$(PYTEST) -q -m "slow or privileged or integration or docker"

test-fast: data
	$(PYTEST) -q -m "not slow and not privileged and not integration and not docker"

protos: $(STAMP)
	$(BIN)/python -m testbed.runtime.wire.protogen
