# The two commands: `make demo` runs the wine story end to end, `make test` runs every check.
# Both bootstrap their own environment from the committed uv.lock on a fresh machine.
SHELL := /bin/bash
# Without uv on PATH, bootstrap installs it with pip and it runs as a module.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen --no-sync

.PHONY: bootstrap demo test lint format clean tools

bootstrap:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode

demo: bootstrap
	$(RUN) driftloop demo

lint: bootstrap
	$(RUN) ruff check src tests benchmarks
	$(RUN) ruff format --check src tests
	$(RUN) mypy

tools:
	scripts/install-tools

# The integration and fault suites run twice: on SQLite (with everything else), then on the machine's PostgreSQL,
# where each test project gets a throwaway database (fails, never skips, when PostgreSQL is down).
test: bootstrap lint tools
	scripts/check-deploy
	$(RUN) pytest -q --durations=25
	$(RUN) pytest -q --durations=25 tests/integration tests/faults --backend postgres

format: bootstrap
	$(RUN) ruff format src tests
	$(RUN) ruff check --fix src tests

clean:
	rm -rf .venv .pytest_cache .ruff_cache
