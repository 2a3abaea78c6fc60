# Everything runs from a local virtualenv that `make` builds on first use.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: venv test lint format demo bench chaos clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e '.[test,postgres]'
	touch $(STAMP)

venv: $(STAMP)

# Bytecode goes outside the tree too: a test, bench or demo run writes nothing into the working
# tree. It is written there even when PYTHONDONTWRITEBYTECODE is set: the prefix hides every
# __pycache__, the venvs' too, so unwritten each of the suite's commands (plur-*, the relay)
# would compile all it imports, every time (plur-queue --help: 2.47 G instructions instead of
# 0.31 G).
PYCACHE := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX="$${XDG_CACHE_HOME:-$$HOME/.cache}/plurcast/pycache"

test: $(STAMP)
	$(PYCACHE) $(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: $(STAMP)
	$(PYCACHE) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

bench: $(STAMP)
	$(PYCACHE) $(PY) bench/bench_cli.py
	$(PYCACHE) $(PY) bench/bench_statements.py
	$(PYCACHE) $(PY) bench/bench_engine.py
	$(PYCACHE) $(PY) bench/bench_scale.py
	$(PYCACHE) $(PY) bench/bench_timing.py
	$(PYCACHE) $(PY) bench/bench_import.py
	$(PYCACHE) $(PY) bench/bench_postgres.py

# Everything going wrong at once for 60 s, then a count on the servers (issue #7; ~90 s).
# Exit 1 when an invariant broke; `python -m bench.chaos --help` for a smaller or longer run.
# CHAOS_ARGS="--database postgresql" runs it on a throwaway PostgreSQL (issue #14).
chaos: $(STAMP)
	$(PYCACHE) $(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
