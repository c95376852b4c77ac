# wtsim: the two set-up commands are `make demo` and `make test`.
# Each creates .venv when it is missing and installs what it needs; when
# pyproject.toml has not changed since the last install, that step is skipped.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# make test's pytest-xdist workers: one a CPU (JOBS=0: all in one process)
JOBS   ?= auto

.PHONY: demo test lab notebooks bench clean

demo: $(VENV)/.core
	$(BIN)/wtsim demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder --nbval-lax --nbval-current-env tests notebooks

lab: $(VENV)/.dev
	$(BIN)/jupyter lab notebooks/

notebooks: $(VENV)/.dev
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.record_timing=False \
		notebooks/[0-9]*.ipynb notebooks/solutions/[0-9]*.ipynb

bench: $(VENV)/.core
	$(BIN)/wtsim bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(VENV)/.core $@

clean:
	rm -rf $(VENV) out .pytest_cache wtsim.egg-info wtsim-demo.db*
