# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo-output

.PHONY: install browser vendor demo test test-fast bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench,dev]'
	touch $(STAMP)

# The map library (Leaflet), its drawing plugin (Leaflet-Geoman) and Natural Earth country
# borders (world-atlas), from the npm registry, checked against SHA512SUMS; the copies are
# committed (wps/static/vendor/, gdmio/data/world-atlas/), so installs need no npm.
VENDOR_NPM := leaflet@1.9.4 @geoman-io/leaflet-geoman-free@2.20.2 world-atlas@2.0.2
vendor:
	rm -rf .vendor && mkdir .vendor
	cd .vendor && for p in $(VENDOR_NPM); do npm pack --silent "$$p" >/dev/null; done
	cd .vendor && sha512sum --strict -c ../wps/static/vendor/SHA512SUMS
	cd .vendor && for t in *.tgz; do mkdir "$${t%.tgz}" && tar xzf "$$t" -C "$${t%.tgz}"; done
	cp .vendor/leaflet-1.9.4/package/dist/leaflet.js .vendor/leaflet-1.9.4/package/dist/leaflet.css \
	   .vendor/leaflet-1.9.4/package/LICENSE wps/static/vendor/leaflet/
	cp .vendor/leaflet-1.9.4/package/dist/images/*.png wps/static/vendor/leaflet/images/
	cp .vendor/geoman-io-leaflet-geoman-free-2.20.2/package/dist/leaflet-geoman.min.js \
	   .vendor/geoman-io-leaflet-geoman-free-2.20.2/package/dist/leaflet-geoman.css \
	   .vendor/geoman-io-leaflet-geoman-free-2.20.2/package/LICENSE wps/static/vendor/leaflet-geoman/
	cp .vendor/world-atlas-2.0.2/package/countries-50m.json \
	   .vendor/world-atlas-2.0.2/package/LICENSE gdmio/data/world-atlas/
	rm -rf .vendor

demo: install
	$(VENV)/bin/gdm opt demo --out $(DEMO)

# Debian's Chromium, driven by the playwright package (no playwright browser download).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# Test files run in parallel, each whole on one process (module fixtures are built once).
TEST_WORKERS ?= 2

test: install browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

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
