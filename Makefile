# Two commands: `make run` and `make test`. Both install into .venv first (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# llama.cpp is compiled for any x86-64 with AVX2, not for this CPU alone: a native build turns on AMX and
# AVX-512 paths that crash on the first decode on some hosts (seen on a Sapphire Rapids VM), and a build
# cached here must also run elsewhere. Set CMAKE_ARGS yourself for CUDA, Metal or a native build.
CMAKE_ARGS ?= -DGGML_NATIVE=OFF
export CMAKE_ARGS

.PHONY: run test install bench eval lint clean

$(PY):
	@test -n "$(PYTHON)" || { echo "Python 3.11 is needed"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when requirements.txt changes; llama-cpp-python compiles once, then pip's wheel cache serves it.
$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

# llama.cpp's llama-server, compiled once per machine from the pinned source (backend/llm/llama_server_build.py)
# and cached under ~/.cache; a fresh clone on the same machine copies it in a second.
ENGINE := $(VENV)/bin/llama-server
$(ENGINE): $(STAMP) backend/llm/llama_server_build.py
	$(PY) -m backend.llm.llama_server_build

install: $(STAMP) $(ENGINE)

# The UI server starts the API server as its child and stops it with itself (Ctrl-C or SIGTERM).
run: install
	$(PY) run_frontend.py --with-backend

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
