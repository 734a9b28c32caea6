# The API server image. llama-cpp-python and llama-server compile here, so build-essential and cmake are needed once.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake bubblewrap \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# A virtualenv outside /usr: the python_code sandbox sees /usr read-only and refuses to run
# where the server's own installation would be visible to sandboxed code.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt .
# A portable llama.cpp build (AVX2), as the Makefile's: the image runs on machines other than the builder.
ENV CMAKE_ARGS=-DGGML_NATIVE=OFF
RUN pip install --no-cache-dir -r requirements.txt
# llama.cpp's llama-server from the same pinned source as `make install`, into /opt/venv/bin (the engine)
COPY backend/llm/llama_server_build.py /tmp/llama_server_build.py
RUN XDG_CACHE_HOME=/tmp/build-cache python /tmp/llama_server_build.py && rm -rf /tmp/build-cache /tmp/llama_server_build.py
COPY backend backend
COPY data/samples data/samples
COPY run_backend.py .
ENV SERVER_HOST=0.0.0.0 DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["python", "run_backend.py"]
