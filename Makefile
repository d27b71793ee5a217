# Two entry points: `make demo` and `make test`. Both build .venv from this repo's files.
# `make demo` installs only what the demo needs (core + the `experiments` extra: no torch,
# no test tools); `make test` extends the same .venv with the full test environment.
# Either may run first, from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SOURCES := pyproject.toml setup.py $(wildcard ul4m4/_kernels*.pyx ul4m4/_kernels*.pxi)
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench bench-scale clean install-demo install-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The demo's environment: numpy, scipy, scikit-learn, threadpoolctl, tqdm, matplotlib, pandas.
$(DEMO_STAMP): $(SOURCES) | $(PY)
	$(PY) -m pip install -q -e '.[experiments]'
	touch $(DEMO_STAMP)

# The full environment (a superset of the demo's, so it marks the demo's as installed too).
$(TEST_STAMP): $(SOURCES) | $(PY)
	@# the CPU build of torch first, so no later requirement pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(TEST_STAMP) $(DEMO_STAMP)

install-demo: $(DEMO_STAMP)

install-test: $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m ul4m4.demo

test: $(TEST_STAMP)
	$(PY) -m ruff check ul4m4 tests benchmarks scripts
	$(PY) -m pytest -q

test-slow: $(TEST_STAMP)
	$(PY) -m pytest -q -m slow

bench: $(TEST_STAMP)
	$(PY) benchmarks/bench_core.py

bench-scale: $(TEST_STAMP)
	$(PY) benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) build *.egg-info
