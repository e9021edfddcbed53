# The README's commands. `make demo` and `make test` both set up first (idempotent).
PY := .venv/bin/python
JOBS ?= 2

.PHONY: setup demo test test-fast bench clean

setup:
	@bash tools/setup.sh

demo: setup
	$(PY) -m codesign.cli run examples/tfc_fashionmnist_pynqz2.yaml

test: setup
	$(PY) -m pytest -n $(JOBS) -q --timeout=900 -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -n $(JOBS) -q -m "not slow" -p no:cacheprovider

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build runs .pytest_cache
