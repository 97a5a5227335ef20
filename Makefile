# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test screenshots scaleout fuzz audit lint lint-check fmt typecheck migrations-check check-deploy bench bench-streams bench-records soak clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

## make run: write .env's development values once, migrate, seed a demo, and serve console + gateway + Celery + two simulated GPU workers on :8000
run: $(STAMP)
	$(BIN)/python -m pendra_console.envfile
	$(BIN)/python manage.py devserver

## make test: the whole suite, on throwaway PostgreSQL and Redis when their binaries are installed,
## in PYTEST_WORKERS pytest-xdist processes (one per core; PYTEST_WORKERS=1: one plain pytest process)
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest $(if $(filter-out 0 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist worksteal) $(PYTEST_ARGS)

## make scaleout: two web nodes behind nginx, two Celery workers, one beat, one PostgreSQL and one Redis act as one
scaleout: $(STAMP)
	$(BIN)/python -m pytest -m scaleout pendra_console/tests/test_scaleout.py $(PYTEST_ARGS)

## make screenshots: the browser tests, writing the README's screenshots into docs/screenshots/
screenshots: $(STAMP)
	PENDRA_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest apps/*/tests/test_browser_*.py $(PYTEST_ARGS)

## make fuzz: the property-based fuzzers at length (make test runs them briefly);
## FUZZ_EXAMPLES examples per route/operation and actor, FUZZ_SECONDS a time bound per test
FUZZ_EXAMPLES ?= 500
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	PENDRA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) PENDRA_FUZZ_SECONDS=$(FUZZ_SECONDS) \
	$(BIN)/python -m pytest -m fuzz -p no:cacheprovider --timeout 0 $(PYTEST_ARGS)

## make audit: installed packages against PyPI's advisory database (pip-audit);
## AUDIT_STRICT=1 also fails when a package could not be looked up
audit: $(STAMP)
	$(BIN)/pip-audit --local --progress-spinner off --timeout 10 $(if $(filter 1,$(AUDIT_STRICT)),--strict)

## make lint: ruff (rules and format) and the import contracts of pyproject.toml (lint-imports)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

lint-check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make typecheck: mypy (strict, with the Django and DRF plugins) on pendra_console/ and apps/gateway/
typecheck: $(STAMP)
	DEBUG=1 $(BIN)/mypy

migrations-check: $(STAMP)
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

check-deploy: $(STAMP)
	DEBUG=0 SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
	ALLOWED_HOSTS=console.pendra.example DATABASE_URL=postgres://pendra@db.internal/pendra \
	REDIS_URL=redis://cache.internal:6379/0 $(BIN)/python manage.py check --deploy --fail-level WARNING

## make bench: the /v1 path beside a bare proxy and the upstream (one interleaved run), the streams bench,
## and metrics/nginx; each writes its table into bench/README.md
bench: $(STAMP)
	$(BIN)/python bench/side_by_side.py --write --profile bench/profiles/side_by_side.svg
	$(MAKE) bench-streams
	$(BIN)/python bench/ops_bench.py

## make bench-streams: 1,000 streams open at once in one web process, then its memory over 200,000 requests
bench-streams: $(STAMP)
	$(BIN)/python bench/streams_bench.py --write

## make bench-records: the console's reads over a million request records (bench/records_bench.py)
bench-records: $(STAMP)
	$(BIN)/python bench/records_bench.py $(BENCH_ARGS)

## make soak: the whole system for SOAK_SECONDS (600) under mixed load and faults, then the books checked
soak: $(STAMP)
	$(BIN)/python bench/soak.py --duration $(or $(SOAK_SECONDS),600) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var/
