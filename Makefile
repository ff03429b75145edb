# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo-output

.PHONY: install browser demo test test-fast bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench,dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/gdm opt demo --out $(DEMO)

# Debian's Chromium, driven by the playwright package (no playwright browser download).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test: install browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/bench_correlation.py
	$(PY) benchmarks/bench_inversion.py

# mypy must be clean on these packages (configuration in pyproject.toml, pydantic plugin).
MYPY_PACKAGES ?= gdmcore kernels gdmio insar

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(MYPY_PACKAGES)
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(DEMO) bench-output .pytest_cache
