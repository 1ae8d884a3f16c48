# `make run` installs and starts the service; `make test` installs and runs every check and test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install scrub torture system-deps bench bench-mixed bench-backends bench-engine seaweedfs test-ceph

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python run.py

# One scrub pass over the store of the STORAGE_* settings (docs/bitrot.md): exit 1 on damage.
scrub: install
	$(BIN)/python run.py scrub

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# Tools some tests drive (systemd-analyze, strace): installed from Debian's packages when missing.
system-deps:
	@command -v systemd-analyze >/dev/null && command -v strace >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd strace)

test: lint system-deps
	$(BIN)/pytest

# The fault tests at full strength (200 kill -9 trials, 1,000 overwrites, ...); prints the figures.
torture: install
	TORTURE=full $(BIN)/pytest -s -q tests/test_torture.py tests/test_group_commit.py

# storage_server against nginx, side by side (README "Performance"); raw results in bench-results.json.
bench: install
	$(BIN)/python benchmarks/bench.py --json bench-results.json

# The locust full mix (50 users, 2 minutes) with fsync on and off: p50/p95/p99 per request type
# (docs/performance.md "Mixed load"); raw results in bench-mixed.json.
bench-mixed: install
	$(BIN)/python benchmarks/mixed.py --json bench-mixed.json

# One node on each backend, side by side (README "Scaling out"); raw results in bench-backends.json.
bench-backends: install
	$(BIN)/python benchmarks/backends.py --json bench-backends.json

# One node on the S3 backend next to its engine through botocore (docs/scaling-out.md); raw
# results in bench-engine.json.
bench-engine: install
	$(BIN)/python benchmarks/engine.py --json bench-engine.json

# The SeaweedFS cluster of the tests (3 masters, 3 volume servers, 2 filers with S3) on 127.0.0.1,
# in ./seaweedfs, until Ctrl-C; prints each node's STORAGE_* settings.
seaweedfs: install
	$(BIN)/python -m tests.seaweed cluster seaweedfs

# The API suites and the S3 store's tests against Ceph RGW as well, a stricter engine (Debian's
# packages, installed when missing; a single memstore OSD takes ~20 PUTs/s): outside `make test`.
test-ceph: install
	STORAGE_TEST_CEPH=1 $(BIN)/pytest --async-test-timeout=1200 -k ceph tests
