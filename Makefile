# cqsm: build the book, regenerate the paper figures, run the tests. `make help` lists the targets.
# Everything runs from .venv, which the first target that needs it creates with $(PYTHON).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3.11
VENV ?= .venv
PROFILE ?= book
CHAPTER ?=
# Where the chapters' training sweeps run (cqsm.rl.sweep): local worker processes, or a Ray
# cluster at RAY_ADDRESS (anything ray.init accepts: host:port of the head node, auto, ...).
BACKEND ?= local
RAY_ADDRESS ?=

BIN := $(VENV)/bin
CQSM := $(BIN)/cqsm
STAMP := $(VENV)/.cqsm-installed
# The chapters' sweep() reads its backend and Ray address from these environment variables.
SWEEP_ENV := CQSM_SWEEP_BACKEND=$(BACKEND)$(if $(RAY_ADDRESS), CQSM_RAY_ADDRESS=$(RAY_ADDRESS),)
PIP_FLAGS := $(if $(CI),--progress-bar off,)
# How many tests and chapters `make test` runs side by side (pytest-xdist workers, and
# `cqsm figures --jobs`).
JOBS ?= 2
# Outputs that `make test` checks must be newer than this (seconds since the epoch).
TEST_START := $(shell date +%s)

.PHONY: help venv book figures chapter test bench lint format clean

help: ## list the targets
	@echo "Usage: make <target> [PROFILE=ci|book|paper] [CHAPTER=<name>] [BACKEND=local|ray] [RAY_ADDRESS=<address>] [JOBS=2]"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'
	@echo "BACKEND=ray trains every chapter's runs (book, figures, chapter) as Ray tasks on the"
	@echo "  cluster at RAY_ADDRESS (host:port of the head node, or auto); the runs' folders must"
	@echo "  be on a filesystem every node shares. Default BACKEND=local: worker processes here."
	@echo "  They reach the chapters as CQSM_SWEEP_BACKEND and CQSM_RAY_ADDRESS (README: Scaling out)."

venv: $(STAMP) ## create .venv and install cqsm with the pinned dependencies

# Re-installs only when pyproject.toml or constraints.txt change.
$(STAMP): pyproject.toml constraints.txt
	@if [ ! -x $(BIN)/python ]; then \
	  command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or pass PYTHON=/path/to/python3.11" >&2; exit 1; }; \
	  echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install $(PIP_FLAGS) --quiet -c constraints.txt --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev,ray]'
	@touch $@

book: $(STAMP) ## regenerate every figure, then build the HTML book from those runs (PROFILE=book)
	$(SWEEP_ENV) $(CQSM) figures --profile $(PROFILE)
	$(CQSM) book --profile $(PROFILE)

figures: $(STAMP) ## regenerate every figure into paper_figures/figures/<profile>/ (PROFILE=book)
	$(SWEEP_ENV) $(CQSM) figures --profile $(PROFILE)

chapter: $(STAMP) ## rerun one chapter and its figures: make chapter CHAPTER=ch04_policy_evaluation PROFILE=ci
	@if [ -z "$(CHAPTER)" ]; then \
	  echo "usage: make chapter CHAPTER=<name> [PROFILE=ci|book|paper]; the chapters are in paper_figures/manifest.yml" >&2; \
	  exit 2; \
	fi
	$(SWEEP_ENV) $(CQSM) figures --profile $(PROFILE) --chapter $(CHAPTER)

# Each chapter runs once: `cqsm figures` executes it, `cqsm book` only renders the result, and
# the last step checks what those two built (tests marked built_outputs).
test: $(STAMP) ## lint, all tests, every figure at ci, the book with warnings as errors, output checks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest --runslow -m "not built_outputs" -n $(JOBS) --dist loadgroup
	$(SWEEP_ENV) $(CQSM) figures --profile ci --jobs $(JOBS)
	$(CQSM) book --profile ci --strict
	CQSM_BUILT_SINCE=$(TEST_START) $(BIN)/pytest --runslow -m built_outputs tests/test_pipeline.py

bench: $(STAMP) ## measure training steps/s and action latency of every algorithm (a results table)
	$(CQSM) bench

lint: $(STAMP) ## check style (ruff check, ruff format --check)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## fix style in place (ruff format, ruff check --fix)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove what the builds made (_build, paper_figures/figures, caches); keeps .venv
	rm -rf _build paper_figures/figures .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 \
	  | xargs -0 rm -rf
