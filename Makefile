# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Prefect's settings (state under .prefect/, no telemetry, quiet console) are set by the
# `loyalty` command itself and, for the tests, by tests/conftest.py.

.PHONY: install browser java demo test lock benchmark signal-quality clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# requirements.lock pins every package we tested with; overrides.txt relaxes prefect 3.9's
# certifi floor, which no published certifi meets yet (see README, Development).
$(VENV)/.installed: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

install: $(VENV)/.installed browser java

# The digest tests look at the HTML in a real browser: Debian's Chromium, installed once.
# Without root or apt-get the demo still runs; only the browser test then fails, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the digest browser test (needs root and apt-get) …"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "warning: could not install chromium; tests/test_digest_in_browser.py will fail"; }

# engine: spark and its tests run pyspark (in the lock) on Java 17: Debian's JRE, installed once.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "Installing Debian's openjdk-17-jre-headless for the Spark engine (needs root and apt-get) …"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; } \
	  || echo "warning: could not install Java 17; engine: spark and tests/system/test_spark_engine.py will fail"; }

demo: install
	$(BIN)/loyalty generate-sample --out extracts
	$(BIN)/loyalty run

# Two workers, one per core of the CI machine (pytest-xdist, in the lock): the whole suite in
# about half the time; `pytest -m "not slow" -n 2` is the fast loop. loadgroup keeps the Spark
# tests (xdist_group "spark") on one worker, so one Spark session serves them all.
test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lock:
	$(BIN)/uv pip compile pyproject.toml --extra test --extra spark --override overrides.txt --python-version 3.11 -o requirements.lock

benchmark: install
	$(BIN)/python benchmarks/nightly.py

# The rules against the BG/NBD baseline (benchmarks/README.md, "Signal quality"). Its extra
# (lifetimes, pandas, scipy) is not in requirements.lock: installed here, with the lock as
# constraints so no pinned package moves (a re-sync of the lock by `make install` removes it).
signal-quality: install
	$(BIN)/uv pip install --quiet --python $(BIN)/python --override overrides.txt --constraint requirements.lock -e ".[benchmark]"
	$(BIN)/python benchmarks/signal_quality.py

clean:
	rm -rf $(VENV) .prefect data outbox extracts
