# Two entry points: `make demo` and `make test`. Both build .venv from this repo's files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint bench bench-scale clean

$(STAMP): pyproject.toml setup.py $(wildcard ul4m4/_kernels*.pyx ul4m4/_kernels*.pxi)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# the CPU build of torch first, so no later requirement pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m ul4m4.demo

test: $(STAMP)
	$(PY) -m ruff check ul4m4 tests benchmarks scripts
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py

bench-scale: $(STAMP)
	$(PY) benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) build *.egg-info
