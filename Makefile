# Two entry points do all the set-up: `make demo` and `make test`. Each builds what it needs on first use, saying so:
#   .venv       (make demo, make test) CPU torch, TRL, transformers and everything in `.[all]`, lgrpo editable: ~1.7 GB
#   .venv-verl  (make test only) CPU torch and verl 0.9.1 with lgrpo: ~2.0 GB, several minutes to build here
#               (verl pins transformers < 5.11, which the TRL environment cannot take)
# `make test` runs the suite in .venv first, then builds .venv-verl and runs the verl plug-in's tests in it; figures
# in README.md ("Development"). A venv is rebuilt when pyproject.toml is newer than its stamp file.
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
	@echo "make: creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	@echo "make: [1/2] installing $(TORCH) into $(VENV)"
	$(BIN)/python -m pip install "$(TORCH)"
	@echo "make: [2/2] installing lgrpo with TRL and everything in .[all] into $(VENV) (about 1.7 GB in all)"
	$(BIN)/python -m pip install -e ".[all]"
	touch $(STAMP)
	@echo "make: $(VENV) is ready"

install: $(STAMP)

$(VERL_BIN)/python:
	@echo "make: creating the second virtual environment $(VERL_VENV), for the verl plug-in's tests (docs/verl.md)"
	$(PYTHON) -m venv $(VERL_VENV)
	$(VERL_BIN)/python -m pip install -q --upgrade pip

$(VERL_STAMP): $(VERL_BIN)/python pyproject.toml
	@echo "make: [1/2] installing $(TORCH) into $(VERL_VENV)"
	$(VERL_BIN)/python -m pip install "$(TORCH)"
	@echo "make: [2/2] installing verl 0.9.1 and lgrpo into $(VERL_VENV) (about 2.0 GB in all: the longest step)"
	$(VERL_BIN)/python -m pip install -e ".[verl-test]"
	touch $(VERL_STAMP)
	@echo "make: $(VERL_VENV) is ready"

install-verl: $(VERL_STAMP)

demo: $(STAMP)
	$(BIN)/lgrpo train --out runs/demo --resume

toy: $(STAMP)
	$(BIN)/lgrpo toy --out runs/toy

# the suite first, so its result does not wait for the verl environment; then that environment and its tests
test: $(STAMP)
	@echo "make: running the test suite in $(VENV) (the verl plug-in's tests follow, in $(VERL_VENV))"
	$(BIN)/python -m pytest -q --ignore=$(VERL_TESTS)
	@$(MAKE) --no-print-directory test-verl

test-verl: $(VERL_STAMP)
	@echo "make: running the verl plug-in's tests in $(VERL_VENV)"
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
