# pgmq-jobs: one-command set-up, demo, test, lint, bench.
# Every target first runs `setup` (scripts/bootstrap.sh), which is idempotent and fast when
# everything is already installed.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
RUFF   := $(VENV)/bin/ruff
SQLFLUFF := $(VENV)/bin/sqlfluff
PYTEST := $(VENV)/bin/pytest
PGMQ_JOBS := $(VENV)/bin/pgmq-jobs

.PHONY: help setup dev demo test lint fmt migrations migrations-check bench bench-quick soak-churn

help: ## list the targets
	@echo "pgmq-jobs make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-18s %s\n", $$1, $$2}'

setup: ## install system packages, .venv (pip -e .[dev]) and the Supabase CLI (idempotent)
	@bash scripts/bootstrap.sh

dev: setup ## start (or reuse) the local cluster in .pgmq-jobs/dev and print its DSN
	@$(PGMQ_JOBS) dev

demo: setup ## set up and run the demo: retries, a dead letter, replay, stats (embedded database)
	@$(PGMQ_JOBS) demo

test: setup ## the fast tier (no database) first, then the suite against a throwaway cluster (or $$DATABASE_URL)
	$(PYTEST) -q tests/fast && $(PYTEST) -q tests --ignore=tests/fast

lint: setup ## ruff check, ruff format --check, sqlfluff lint sql/
	$(RUFF) check .
	$(RUFF) format --check .
	$(SQLFLUFF) lint sql/

fmt: setup ## ruff fix + format, sqlfluff fix sql/
	$(RUFF) check --fix .
	$(RUFF) format .
	$(SQLFLUFF) fix sql/

migrations: setup ## regenerate the current release's supabase migration from sql/
	$(PY) -m pgmq_jobs.ops.migrations

migrations-check: setup ## fail if a released migration changed or the current one is stale
	$(PY) -m pgmq_jobs.ops.migrations --check

BENCH_DEPS = $(PY) -c 'import matplotlib' 2>/dev/null || \
	$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'

bench: setup ## pgmq-jobs vs raw PGMQ and peers (< 15 min): bench/results/, BENCHMARKS.md, chart
	@$(BENCH_DEPS)
	$(PY) -m bench.run

bench-quick: setup ## smoke run of the benchmarks (< 2 min): bench/results/<date>-quick.*
	@$(BENCH_DEPS)
	$(PY) -m bench.run --quick

.PHONY: soak
soak: setup ## long mixed fault run (SOAK_SECONDS, default 600) ending with the ledger checker's table
	$(PY) scripts/soak.py

soak-churn: setup ## 2,000,000 jobs through one queue (not in CI): sizes, dead tuples, claim start vs end
	$(PY) scripts/soak_churn.py --jobs 2000000 --json bench/results/soak-churn.json
