# `make run` and `make test` bootstrap their own virtual environment from
# pyproject.toml; nothing else needs to be installed first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test proto clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "alquery needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,peers]'
	touch $(STAMP)

# The main job: an active-learning loop on the digits data through a real server.
run: $(STAMP)
	$(PY) -m alquery.client.demo

test: $(STAMP)
	$(PY) -m pytest -q

# Regenerate client/v1 from proto/ after editing a .proto file.
proto: $(STAMP)
	$(PY) proto/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
