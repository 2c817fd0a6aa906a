# Two commands: `make train` and `make test`. Both create .venv and install the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Imagenette is read from $VISION_EXP_DATA/imagenette2-160: ../shared/data when that copy exists,
# else ./data, where `make train` downloads it on first use.
VISION_EXP_DATA ?= $(if $(wildcard ../shared/data/imagenette2-160),$(abspath ../shared/data),$(CURDIR)/data)
export VISION_EXP_DATA
ARGS ?=
PYTEST_ARGS ?=

.PHONY: train test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

train: install
	$(BIN)/python -m vision_exp.train data.download=true $(ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache
