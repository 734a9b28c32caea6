# Two commands: `make run` and `make test`. Both install into .venv first (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install bench eval lint clean

$(PY):
	@test -n "$(PYTHON)" || { echo "Python 3.11 is needed"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when requirements.txt changes; llama-cpp-python compiles once, then pip's wheel cache serves it.
$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) run_backend.py & BACKEND=$$!; \
	trap 'kill $$BACKEND 2>/dev/null' EXIT INT TERM; \
	$(PY) run_frontend.py

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check backend tests bench run_backend.py run_frontend.py
	$(VENV)/bin/mypy --strict backend run_backend.py run_frontend.py

bench: install
	$(PY) bench/chat_overhead.py
	$(PY) bench/rag.py
	$(PY) bench/agents.py

# Router and end-to-end task accuracy on the embedded model (see README, Agents > Evaluation)
eval: install
	$(PY) -m tests.eval

clean:
	rm -rf $(VENV) .pytest_cache
