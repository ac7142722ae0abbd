# Set-up and the entry points. They bootstrap .venv on a fresh machine and are
# idempotent: the venv is rebuilt only when pyproject.toml changes.
#   make test      lint + the CI tier of the test suite (CPU; Triton kernels run
#                  through TRITON_INTERPRET=1, set by tests/kernels/conftest.py)
#   make test-all  lint + every test, the nightly tier too (SCHEDC_NIGHTLY=1:
#                  4-rank restarts, long documented runs, the whole sweep grid,
#                  larger property budgets; tests/tiers.py)
#   make demo      compile, show, simulate, draw and train an example end to end

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch==2.13.0 is PyTorch's CPU build on machines without a GPU (pip takes the
# wheel on disk there); on a GPU machine the same pin installs the CUDA build.
TORCH ?= torch==2.13.0

.PHONY: test test-all demo lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[runtime,dev,hf]"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check schedc runtime kernels tests bench

# The kernel tests run Triton's interpreter (TRITON_INTERPRET=1 must be set
# before triton is first imported), so they get a process of their own.
test: $(STAMP) lint
	$(PY) -m pytest --ignore=tests/kernels
	$(PY) -m pytest tests/kernels

test-all: export SCHEDC_NIGHTLY = 1
test-all: test

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

clean:
	rm -rf $(VENV) demo-out .pytest_cache .hypothesis
