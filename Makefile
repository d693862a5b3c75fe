# Two commands a new user needs: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= data,prune,serve,bench,openvino,ray,dev

.PHONY: demo demo-fast test lint install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# Type stubs only (.pyi); TensorRT itself comes from NVIDIA's index or JetPack.
	$(BIN)/python -m pip install -q --no-deps "tensorrt-stubs>=10"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/simmim-deploy demo --out runs/demo --overwrite

demo-fast: $(STAMP)
	$(BIN)/simmim-deploy demo --fast --out runs/demo-fast --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
