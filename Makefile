# The two commands of the README. Both create .venv when it is missing and install the
# project into it; nothing has to be installed by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.wsload-installed

.PHONY: demo test install lint format clean browser idp prometheus notebooks lab

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/wsload demo

# A fresh demo run and a stepped capacity run, then both notebooks executed in place.
notebooks: install
	$(BIN)/python analysis/refresh.py

# The notebooks in Jupyter, on the newest run (results/latest) unless WSLOAD_RUN names one.
# Jupyter refuses to run as root without --allow-root (a container, CI).
lab: install
	$(BIN)/jupyter lab analysis/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# Browser tests drive Debian's chromium; install it when missing (root, as in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "make: installing Debian chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# The token-endpoint tests start a real identity provider (npm oidc-provider, pinned in
# tests/idp/package-lock.json); install it when node is there and it is missing.
idp:
	@if command -v npm >/dev/null 2>&1 && [ ! -d tests/idp/node_modules/oidc-provider ]; then \
	  echo "make: installing the test identity provider (npm ci in tests/idp)"; \
	  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error >/dev/null; fi

# The live-metrics tests scrape a run with a real Prometheus: Debian's, installed when missing.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "make: installing Debian prometheus for the live-metrics tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

test: install browser idp prometheus
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 3 --durations=15

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache tests/idp/node_modules
