# Two entry points do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch 2.13.0 is what CI machines carry; override for a CUDA build, e.g. TORCH=torch.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.lgrpo-installed

.PHONY: demo test lint install clean toy bench smollm2

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lgrpo train --out runs/demo --resume

toy: $(STAMP)
	$(BIN)/lgrpo toy --out runs/toy

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The real pretrained model used by tests and benchmarks (SmolLM2-135M-Instruct GGUF, ~98 MB, cached).
smollm2: $(STAMP)
	$(BIN)/python -m lgrpo.assets

bench: $(STAMP)
	$(BIN)/python benchmarks/process_sets.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
