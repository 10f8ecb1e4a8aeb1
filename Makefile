# The two commands a newcomer needs: `make bench` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TIER   ?= quick
export JAX_PLATFORMS ?= cpu
export PYTHONUNBUFFERED := 1

.PHONY: setup test test-slow bench lint clean

setup: $(STAMP)

# Reinstall whenever the pinned metadata changes.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Test files are spread over TEST_WORKERS processes (pytest-xdist; a file's tests stay in one
# process, so its module fixtures are built once): a test's time is mostly one XLA compile,
# which keeps one core busy. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

test-slow: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m slow

# Runs the tier's sweep (bench/sweeps/$(TIER).toml): builds missing datasets, skips finished
# cells, resumes interrupted ones from their checkpoints, then writes results/leaderboard.md.
bench: setup
	$(PY) -m bench sweep $(TIER)

clean:
	rm -rf $(VENV) .cache .pytest_cache *.egg-info
