# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` needs only the app's own dependencies; the dev tools come with test/check.
RUN_STAMP := $(VENV)/.installed-run
PORT ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test check format bench system-deps cluster clean

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
# Redis for the distributed backend's tests and `make cluster` (run as processes by the tests and
# by server/cluster.py, never as services), installed once; skipped when they are already there.
# The lock timeout waits for another apt (an engineer's, unattended-upgrades) instead of failing
# at once. SYSTEM_DEPS narrows the list (`make cluster` needs no browser).
SYSTEM_DEPS ?= chromium nginx postgresql redis-server
system-deps:
	@missing=""; \
	want() { case " $(SYSTEM_DEPS) " in *" $$1 "*) return 0;; esac; return 1; }; \
	want chromium && ! command -v chromium >/dev/null 2>&1 && missing="$$missing chromium"; \
	want nginx && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && missing="$$missing nginx"; \
	want postgresql && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && missing="$$missing postgresql"; \
	want redis-server && ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ] && missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get -o DPkg::Lock::Timeout=120 update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=120 install -y -q $$missing; \
	fi

# The distributed backend on this machine, until Ctrl-C: redis-server, PostgreSQL (run as the
# postgres user), 3 workers and nginx round-robin in front on PORT (default 8080); every file in
# a fresh directory under /tmp, removed at the end. Options: python -m server.cluster --help.
cluster: SYSTEM_DEPS := nginx postgresql redis-server
cluster: $(RUN_STAMP) system-deps
	$(BIN)/python -m server.cluster $(if $(PORT),--port $(PORT))

# Two processes (the machine's two cores; the suite mostly waits on real time): tests/parallel.py
# says how the modules are shared, Chromium and the clusters one at a time in one of them.
test: install system-deps
	env -u OPENAI_API_KEY $(BIN)/python -m pytest -n 2 --dist loadfile

check: install
	$(BIN)/ruff check server tests $(wildcard bench) run.py
	$(BIN)/ruff format --check server tests $(wildcard bench) run.py
	$(BIN)/mypy

format: install
	$(BIN)/ruff format server tests $(wildcard bench) run.py
	$(BIN)/ruff check --fix server tests $(wildcard bench) run.py

# The cluster case runs Redis, PostgreSQL and nginx as processes, as `make cluster` does.
bench: SYSTEM_DEPS := nginx postgresql redis-server
bench: install system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
