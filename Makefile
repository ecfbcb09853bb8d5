# monitor — see README.md. `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export YOLO_CONFIG_DIR := $(CURDIR)/var/yolo
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test lint typecheck pytest e2e demo bench models clean

setup:
	scripts/setup.sh all

lint: setup
	$(VENV)/bin/ruff check monitor tests bench scripts

typecheck: setup
	$(VENV)/bin/mypy

# pytest exits 5 when it ran no test: that is a failure here too.
pytest: setup
	$(VENV)/bin/pytest -p no:cacheprovider

test: lint typecheck pytest

# The whole simulated city against ground truth, alone (a few minutes; also part of `make test`).
e2e: setup
	$(VENV)/bin/pytest -p no:cacheprovider tests/test_city_e2e.py

demo: setup
	$(VENV)/bin/monitor demo

bench: setup
	$(PY) -m bench

models: setup
	$(PY) -m monitor.detectors.train

clean:
	rm -rf var .mypy_cache .ruff_cache
