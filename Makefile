# One command surface for people and CI. `scripts/test` and `scripts/demo` do their own
# set-up (system packages, .venv); the other targets assume it exists.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test demo lint soak bench bench-gpu bundle

test:
	scripts/test

demo:
	scripts/demo

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# Each benchmark side by side with a baseline; writes docs/BENCHMARKS.md.
bench:
	$(PY) -m bench.run

# On a GPU machine: the worker vs a bare diffusers loop (bench/gpu.py; JSON lines).
bench-gpu:
	$(PY) bench/gpu.py --shape sd15

# 10 000 synthetic jobs through the local studio: memory growth, fds, queue bounds.
soak:
	$(PY) bench/soak.py --jobs 10000

# The desktop bundle (one-folder) and its smoke tests.
bundle:
	scripts/build-bundle onedir
	STUDIO_WORKER_BUNDLE=dist/onedir/StudioWorker/StudioWorker $(PY) -m pytest tests/bundle -q
