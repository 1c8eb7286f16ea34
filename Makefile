# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` needs only the app's own dependencies; the dev tools come with test/check.
RUN_STAMP := $(VENV)/.installed-run
PORT ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test check format bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

# `make run PORT=9000` listens on another port; without PORT the settings decide.
run: $(RUN_STAMP)
	$(BIN)/python run.py $(if $(PORT),--port $(PORT))

# Debian's Chromium for the browser tests, nginx for the reverse-proxy test, and PostgreSQL and
# Redis for the distributed backend's tests (run as processes by the tests, never as services),
# installed once; skipped when they are already there. The lock timeout waits for another apt
# (an engineer's, unattended-upgrades) instead of failing at once.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get -o DPkg::Lock::Timeout=120 update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=120 install -y -q $$missing; \
	fi

test: install system-deps
	env -u OPENAI_API_KEY $(BIN)/python -m pytest

check: install
	$(BIN)/ruff check server tests $(wildcard bench) run.py
	$(BIN)/ruff format --check server tests $(wildcard bench) run.py
	$(BIN)/mypy

format: install
	$(BIN)/ruff format server tests $(wildcard bench) run.py
	$(BIN)/ruff check --fix server tests $(wildcard bench) run.py

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
