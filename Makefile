# Two entry points do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch 2.13.0 is what CI machines carry; override for a CUDA build, e.g. TORCH=torch.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.lgrpo-installed
# verl 0.9.1 pins transformers<5.11, which the TRL environment cannot take: its plug-in is tested in a second venv
# holding lgrpo (no TRL), verl and the test tools only (docs/verl.md).
VERL_VENV ?= .venv-verl
VERL_BIN := $(VERL_VENV)/bin
VERL_STAMP := $(VERL_VENV)/.lgrpo-installed
VERL_TESTS := tests/engines/test_verl.py

.PHONY: demo test test-verl lint install install-verl clean toy bench smollm2

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

$(VERL_BIN)/python:
	$(PYTHON) -m venv $(VERL_VENV)
	$(VERL_BIN)/python -m pip install -q --upgrade pip

$(VERL_STAMP): $(VERL_BIN)/python pyproject.toml
	$(VERL_BIN)/python -m pip install -q "$(TORCH)"
	$(VERL_BIN)/python -m pip install -q -e ".[verl-test]"
	touch $(VERL_STAMP)

install-verl: $(VERL_STAMP)

demo: $(STAMP)
	$(BIN)/lgrpo train --out runs/demo --resume

toy: $(STAMP)
	$(BIN)/lgrpo toy --out runs/toy

test: $(STAMP) $(VERL_STAMP)
	$(BIN)/python -m pytest -q --ignore=$(VERL_TESTS)
	$(VERL_BIN)/python -m pytest -q $(VERL_TESTS)

test-verl: $(VERL_STAMP)
	$(VERL_BIN)/python -m pytest -q $(VERL_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The real pretrained model used by tests and benchmarks (SmolLM2-135M-Instruct GGUF, ~98 MB, cached).
smollm2: $(STAMP)
	$(BIN)/python -m lgrpo.assets

bench: $(STAMP)
	$(BIN)/python benchmarks/process_sets.py

clean:
	rm -rf $(VENV) $(VERL_VENV) build dist src/*.egg-info
