# Set-up and entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/lfw-demo
OUT    ?= demo-out
# torch first, pinned to the local CPU build: a bare `torch` in an empty venv pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: setup demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/leam demo $(DATA) --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check leam tests benchmarks

bench: setup
	$(BIN)/python benchmarks/leam_vs_backward.py

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
