"""The embedded engine (`LLM_BACKEND=llamacpp`): llama.cpp's own `llama-server` as a supervised child.

C++ decodes each token without the Python binding's per-token overhead, serves `parallel` requests at
once with continuous batching, and keeps prompt prefixes cached (`cache_prompt`), so the next turn of
a chat and the next step of an agent only read what is new.

Everything that decides what the model sees stays here, shared with the in-process engine: the prompt
is rendered from the GGUF's chat template with tool calls and results written as text
(`llamacpp_prompt`), and JSON schemas and `tool_choice` become a GBNF grammar checked in the request
path (`llamacpp_grammar`). The child only tokenizes, samples and decodes, through its native
`/completion` endpoint, which takes that prompt and grammar as they are. Its OpenAI endpoint would
re-template the messages and build its own grammar, with different results from the in-process engine.

Requests are admitted as on the in-process engine (a queue limit with 503 + `Retry-After`, a fair share
per user), then wait for one of the child's slots. A client that leaves closes its connection to the
child, which stops that slot's generation at its next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from backend.llm.admission import Admission
from backend.llm.llama_server_process import EngineLaunch, LlamaServerProcess
from backend.llm.llamacpp_grammar import GrammarCompiler, GrammarPlan
from backend.llm.llamacpp_prompt import ChatPrompt, prompt_messages
from backend.llm.port import (
    BackendBusy,
    BackendHealth,
    BackendUnavailable,
    ChatMessage,
    FinishReason,
    GenerationOptions,
    ModelInfo,
    ModelNotFound,
    StreamDelta,
    UnsupportedRequest,
    Usage,
)
from backend.llm.preparation import PreparationPool
from backend.llm.schema_limits import SchemaLimits
from backend.llm.tool_prompt import parse_tool_output
from backend.metrics import Metrics

logger = logging.getLogger(__name__)

INLINE_PREPARE_CHARS = 4096
INLINE_PREPARE_MESSAGES = 32
"""At most this many messages of at most INLINE_PREPARE_CHARS in all (content, tool calls and their
ids), with no tools or grammar to write, are rendered on the event loop: the template takes well under
a millisecond, while the hop to the pool and back can wait milliseconds for the GIL when the router's
embedder runs beside it."""

READY_WAIT_S = 30.0
"""How long a request waits for a child that is (re)starting before it is told to retry."""

_SAMPLING_DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
"""llama-cpp-python's defaults, so both engines sample alike when the request leaves a value out."""


def _small(messages: list[ChatMessage]) -> bool:
    """Whether rendering `messages` is cheap enough for the event loop (everything that is written counts)."""
    if len(messages) > INLINE_PREPARE_MESSAGES:
        return False
    chars = sum(
        len(message.content or "") + len(message.tool_call_id or "")
        + sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
        for message in messages
    )
    return chars <= INLINE_PREPARE_CHARS


def _always_wanted() -> None:
    """`still_wanted` for work done on the loop itself, which no cancellation can interrupt."""


@dataclass(frozen=True)
class _Prepared:
    prompt: str
    stop: list[str]
    grammar: str | None


class LlamaServerBackend:
    """The embedded model, served by a llama-server child this backend starts and supervises."""

    name = "llamacpp"

    def __init__(
        self, launch: EngineLaunch, *, max_queue: int, queue_timeout_s: float, metrics: Metrics,
        max_queue_per_user: int | None = None,
    ) -> None:
        """Reads the GGUF's vocabulary and template only (no weights); `start` launches the child."""
        from llama_cpp import Llama

        self._launch = launch
        vocabulary = Llama(model_path=str(launch.model_path), vocab_only=True, verbose=False)
        self._prompt = ChatPrompt(vocabulary)
        self.grammars = GrammarCompiler(
            vocabulary._model.vocab, SchemaLimits.for_context(launch.n_ctx, self._prompt.max_token_bytes)
        )
        self._vocabulary = vocabulary  # the grammar compiler's vocabulary lives as long as it
        self.default_model = launch.model_path.name.removesuffix(".gguf")
        self._created = int(launch.model_path.stat().st_mtime)
        self.admission = Admission(max_queue=max_queue, max_queue_per_user=max_queue_per_user, metrics=metrics)
        self._queue_timeout_s = queue_timeout_s
        self._metrics = metrics
        self._preparation = PreparationPool("llama-prep")
        self.engine = LlamaServerProcess(launch, metrics)
        self._slots = asyncio.Semaphore(launch.parallel)
        self.slots_busy = 0

    async def start(self, ready_timeout_s: float) -> None:
        """Launch the child and wait for it; a child that is not ready by then keeps starting in the background."""
        self.engine.start()
        if not await self.engine.wait_ready(ready_timeout_s):
            logger.warning("llama-server is not ready after %.0f s; requests wait for it", ready_timeout_s)

    # --- the port

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=self.default_model, created=self._created, owned_by="local")]

    async def health(self) -> BackendHealth:
        engine = self.engine.state() | {"slots": self._launch.parallel, "slots_busy": self.slots_busy}
        detail = (
            f"llama-server running (pid {engine['pid']}, {self._launch.parallel} slots)" if engine["running"]
            else f"llama-server starting (restarts: {engine['restarts']}, last exit: {engine['last_exit']})"
        )
        return BackendHealth(
            ok=bool(engine["running"]), backend=self.name, model=self.default_model, detail=detail, engine=engine
        )

    async def aclose(self) -> None:
        await self.engine.aclose()
        await self._preparation.aclose()
        await asyncio.to_thread(self._vocabulary.close)

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[StreamDelta, None]:
        if model != self.default_model:
            raise ModelNotFound(model)
        with self.admission.admit(options.user):
            plan = self.grammars.plan(options)  # in the request path: a bad schema costs under a millisecond
            prepared = await self._prepare(messages, options, plan)
            async with self._slot(), contextlib.aclosing(self._generate(prepared, options)) as deltas:
                async for delta in deltas:  # closed with this generator: the child's stream ends at once
                    yield delta

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of the child's slots, once it answers; waiting past the queue timeout is a 503 to retry."""
        try:
            async with asyncio.timeout(self._queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise BackendBusy("Every slot of the embedded model is busy; retry shortly.", 5) from None
        self.slots_busy += 1
        self._metrics.engine_slots_busy.set(self.slots_busy)
        try:
            if not await self.engine.wait_ready(min(READY_WAIT_S, self._queue_timeout_s)):
                raise BackendUnavailable("The embedded model is starting; retry shortly.")
            yield
        finally:
            self.slots_busy -= 1
            self._metrics.engine_slots_busy.set(self.slots_busy)
            self._slots.release()

    # --- preparation, on its own small pool

    async def _prepare(
        self, messages: list[ChatMessage], options: GenerationOptions, plan: GrammarPlan | None
    ) -> _Prepared:
        """Prompt and grammar on the preparation pool; a request cancelled meanwhile never reaches the model."""
        if plan is None and not options.tools and _small(messages):
            return self._prepare_now(messages, options, plan, _always_wanted)
        return await self._preparation.run(functools.partial(self._prepare_now, messages, options, plan))

    def _prepare_now(
        self, messages: list[ChatMessage], options: GenerationOptions, plan: GrammarPlan | None,
        still_wanted: Callable[[], None],
    ) -> _Prepared:
        rendered = prompt_messages(messages, options)
        self._prompt.check_fits(rendered, self._launch.n_ctx)
        still_wanted()
        grammar = self.grammars.gbnf(plan) if plan is not None else None
        still_wanted()
        prompt, template_stop = self._prompt.text(rendered)
        return _Prepared(prompt, [*options.stop, *template_stop], grammar)

    # --- generation in the child

    def _request(self, prepared: _Prepared, options: GenerationOptions) -> dict[str, Any]:
        sampling = {
            "temperature": options.temperature, "top_p": options.top_p,
            "presence_penalty": options.presence_penalty, "frequency_penalty": options.frequency_penalty,
        }
        body: dict[str, Any] = _SAMPLING_DEFAULTS | {key: value for key, value in sampling.items() if value is not None}
        body |= {
            "prompt": prepared.prompt, "stream": True, "cache_prompt": True,
            "n_predict": -1 if options.max_tokens is None else options.max_tokens,
            "stop": prepared.stop, "seed": -1 if options.seed is None else options.seed,
        }
        if prepared.grammar is not None:
            body["grammar"] = prepared.grammar
        if options.logit_bias:
            n_vocab = self._prompt.n_vocab
            body["logit_bias"] = [
                [token, bias] for token, bias in options.logit_bias.items() if 0 <= token < n_vocab
            ]
        return body

    async def _generate(
        self, prepared: _Prepared, options: GenerationOptions
    ) -> AsyncGenerator[StreamDelta, None]:
        wants_tools = bool(options.tools) and options.tool_choice != "none"
        buffered: list[str] = []
        tokens = 0
        final: dict[str, Any] | None = None
        try:
            async with self.engine.client.stream("POST", "/completion", json=self._request(prepared, options)) as reply:
                if reply.status_code != 200:
                    raise await _refusal(reply, self._launch.n_ctx)
                if options.handed_over is not None:
                    options.handed_over()
                if wants_tools:
                    yield StreamDelta()  # starts the response; the tool call is only known once its JSON is whole
                async for event in _events(reply):
                    tokens += len(event.get("tokens") or ())
                    text = str(event.get("content") or "")
                    if text and wants_tools:
                        buffered.append(text)
                    elif text:
                        yield StreamDelta(content=text)
                    if event.get("stop"):
                        final = event
                        break
        except httpx.TransportError as error:
            raise BackendUnavailable(
                "The embedded model stopped during the answer and is being restarted; retry shortly."
            ) from error
        except (GeneratorExit, asyncio.CancelledError):  # the client left: count what was generated
            self._metrics.generations_cancelled.labels(self.name).inc()
            self._metrics.tokens_generated.labels(self.name).inc(tokens)
            raise
        if final is None:
            raise BackendUnavailable("The embedded model ended its answer without finishing it; retry shortly.")
        if final.get("error"):
            raise BackendUnavailable(f"The embedded model failed: {final['error']}")
        usage = Usage(
            prompt_tokens=int(final.get("tokens_evaluated") or 0),
            completion_tokens=int(final.get("tokens_predicted") or tokens),
            cached_tokens=int((final.get("timings") or {}).get("cache_n") or 0),  # the prefix it did not re-read
        )
        finish: FinishReason = "length" if final.get("stop_type") == "limit" else "stop"
        if wants_tools:
            content, calls = parse_tool_output("".join(buffered))
            yield StreamDelta(
                content=content, tool_calls=tuple(calls), finish_reason="tool_calls" if calls else finish, usage=usage,
            )
            return
        yield StreamDelta(finish_reason=finish, usage=usage)


async def _events(reply: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of llama-server's server-sent events (`data: {...}` lines)."""
    async for line in reply.aiter_lines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if isinstance(event, dict):
                yield event
        elif line.startswith("error: "):
            raise BackendUnavailable(f"The embedded model failed: {line[7:]}")


async def _refusal(reply: httpx.Response, n_ctx: int) -> Exception:
    """The error for a request llama-server refused before generating."""
    raw = await reply.aread()
    try:
        error = json.loads(raw)["error"]
        message, kind = str(error.get("message", "")), str(error.get("type", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        error, message, kind = {}, raw.decode("utf-8", "replace")[:500], ""
    if kind == "exceed_context_size_error":
        counted = error.get("n_prompt_tokens") or next(iter(re.findall(r"\((\d+) tokens\)", message)), "more")
        return UnsupportedRequest(
            f"The messages take {counted} tokens; this model's context holds {n_ctx}.", "messages"
        )
    if reply.status_code == 400:
        return UnsupportedRequest(f"The embedded model refused the request: {message}")
    return BackendUnavailable(f"The embedded model answered HTTP {reply.status_code}: {message}")
