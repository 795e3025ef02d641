# The two set-up commands (README): `make demo` and `make test`. Each creates .venv if missing and installs
# the project (editable) with what it needs, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real datasets for tests/benchmarks, used when present beside the project (never copied into it).
REAL_DATA ?= $(abspath $(wildcard ../shared/data))
WORKSPACE ?= demo-workspace

.PHONY: demo test install bench clean-demo

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# test-only reference for the Grad-CAM parity tests; --no-deps: its metadata pulls opencv-python, which would
	# clash with opencv-python-headless
	$(PY) -m pip install --quiet --no-deps grad-cam==1.5.7 ttach tqdm
	@touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/lesionkit demo --workspace $(WORKSPACE) --overwrite

test: $(VENV)/.installed
	LESIONKIT_REAL_DATA=$(REAL_DATA) $(PY) -m pytest -q -n 2

bench: $(VENV)/.installed
	LESIONKIT_REAL_DATA=$(REAL_DATA) $(PY) benchmarks/bench_manifest.py

clean-demo:
	rm -rf $(WORKSPACE)
