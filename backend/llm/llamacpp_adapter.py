"""The in-process engine (`LLM_BACKEND=llamacpp-inprocess`): a GGUF model run through llama-cpp-python.

One model, one context: generations run one at a time on a single worker thread whose job queue
serialises them (concurrent use of one llama context corrupts it). Each generation checks a
cancellation flag between tokens, so a client that leaves stops its generation at once.

Nothing but generation runs on that worker, so no request can hold it up for the others: a schema is
checked in the request path (`schema_limits`), and the grammar build, the chat template and the
tokenizer's count of the prompt run first on a small preparation pool of their own (the vocabulary is
read-only, so tokenizing beside a generation is safe). Only a request that fits joins the queue, and
each user may have at most `max_queue_per_user` generations queued or running.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.llm.admission import Admission
from backend.llm.llamacpp_grammar import GrammarCompiler, GrammarPlan
from backend.llm.llamacpp_prompt import ChatPrompt, prompt_messages
from backend.llm.port import (
    BackendBusy,
    BackendHealth,
    ChatMessage,
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

_END = object()


class _Cancelled(Exception):
    """Raised inside the worker when the consumer went away; carries the tokens generated until then."""

    def __init__(self, tokens: int) -> None:
        super().__init__(tokens)
        self.tokens = tokens


@dataclass(frozen=True)
class _Prepared:
    """A request that fits the model: what the worker needs to generate."""

    prompt_messages: list[dict[str, Any]]
    prompt_tokens: int
    grammar: Any


class LlamaCppBackend:
    """The embedded llama.cpp backend."""

    name = "llamacpp-inprocess"

    def __init__(
        self, model_path: Path, *, n_ctx: int, n_threads: int, max_queue: int,
        queue_timeout_s: float, metrics: Metrics, max_queue_per_user: int | None = None,
    ) -> None:
        from llama_cpp import Llama

        self._llama = Llama(
            model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads,
            verbose=False,
        )
        self._prompt = ChatPrompt(self._llama)
        self.default_model = model_path.name.removesuffix(".gguf")
        self._created = int(model_path.stat().st_mtime)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._preparation = PreparationPool("llamacpp-prep")
        self.admission = Admission(max_queue=max_queue, max_queue_per_user=max_queue_per_user, metrics=metrics)
        self._queue_timeout_s = queue_timeout_s
        self._metrics = metrics
        self.grammars = GrammarCompiler(
            self._llama._model.vocab, SchemaLimits.for_context(n_ctx, self._prompt.max_token_bytes)
        )

    # --- the port

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=self.default_model, created=self._created, owned_by="local")]

    async def health(self) -> BackendHealth:
        return BackendHealth(ok=True, backend=self.name, model=self.default_model, detail="embedded model loaded")

    async def aclose(self) -> None:
        await self._preparation.aclose()
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
        await asyncio.to_thread(self._llama.close)

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[StreamDelta, None]:
        if model != self.default_model:
            raise ModelNotFound(model)
        holds = self.admission.admit(options.user)  # held until the worker is done with the job
        try:
            plan = self.grammars.plan(options)  # in the request path: a bad schema costs under a millisecond
            prepared = await self._prepare(messages, options, plan)
        except BaseException:
            holds.close()
            raise
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        started = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        def produce() -> None:
            started.set()
            if options.handed_over is not None:
                loop.call_soon_threadsafe(options.handed_over)  # the worker has it
            try:
                if cancelled.is_set():
                    return
                for delta in self._generate(prepared, options, cancelled):
                    put(delta)
            except _Cancelled as stop:
                # Finished generations are counted from their usage; a cancelled one never reports it.
                self._metrics.generations_cancelled.labels(self.name).inc()
                self._metrics.tokens_generated.labels(self.name).inc(stop.tokens)
            except BaseException as error:  # handed to the consumer, who raises it on the loop
                put(error)
            finally:
                put(_END)

        future = loop.run_in_executor(self._executor, produce)
        future.add_done_callback(lambda _: holds.close())
        try:
            try:
                item = await asyncio.wait_for(items.get(), timeout=self._queue_timeout_s)
            except TimeoutError:
                if not started.is_set():
                    raise BackendBusy("The embedded model is busy; retry shortly.", 5) from None
                # Started: the generation is bounded by max_tokens, the context and the client.
                item = await items.get()
            while item is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
                item = await items.get()
        finally:
            cancelled.set()

    async def _prepare(
        self, messages: list[ChatMessage], options: GenerationOptions, plan: GrammarPlan | None
    ) -> _Prepared:
        """Prompt and grammar on the preparation pool; a request cancelled meanwhile never reaches the model."""
        return await self._preparation.run(functools.partial(self._prepare_now, messages, options, plan))

    # --- inside the preparation threads

    def _prepare_now(
        self, messages: list[ChatMessage], options: GenerationOptions, plan: GrammarPlan | None,
        still_wanted: Callable[[], None],
    ) -> _Prepared:
        n_ctx = self._llama.n_ctx()
        rendered = prompt_messages(messages, options)
        self._prompt.check_fits(rendered, n_ctx)
        still_wanted()
        grammar = self.grammars.build(plan) if plan is not None else None
        still_wanted()
        text, _ = self._prompt.text(rendered)
        prompt_tokens = len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        if prompt_tokens >= n_ctx:
            raise UnsupportedRequest(
                f"The messages take {prompt_tokens} tokens; this model's context holds {n_ctx}.", "messages"
            )
        return _Prepared(rendered, prompt_tokens, grammar)

    # --- inside the worker thread

    def _generate(
        self, prepared: _Prepared, options: GenerationOptions, cancelled: threading.Event
    ) -> Iterator[StreamDelta]:
        steps = 0
        bias = options.logit_bias or {}
        n_vocab = self._llama.n_vocab()
        bias = {token: value for token, value in bias.items() if 0 <= token < n_vocab}

        def count_and_bias(_: Any, scores: Any) -> Any:
            # One call per sampled token. logit_bias is applied here rather than passed to llama-cpp-python,
            # which drops both its own bias processor and ours when given the two together. (Raising here
            # would be swallowed by the ctypes callback, so cancellation is checked in the chunk loop.)
            nonlocal steps
            steps += 1
            for token, value in bias.items():
                scores[token] += value
            return scores

        from llama_cpp import LogitsProcessorList

        wants_tools = bool(options.tools) and options.tool_choice != "none"
        started = time.perf_counter()
        chunks = self._llama.create_chat_completion(
            messages=prepared.prompt_messages,  # type: ignore[arg-type]
            stream=True,
            max_tokens=options.max_tokens,
            temperature=0.8 if options.temperature is None else options.temperature,
            top_p=0.95 if options.top_p is None else options.top_p,
            stop=list(options.stop),
            seed=options.seed,
            grammar=prepared.grammar,
            presence_penalty=options.presence_penalty or 0.0,
            frequency_penalty=options.frequency_penalty or 0.0,
            logits_processor=LogitsProcessorList([count_and_bias]),
        )
        finish_reason = "stop"
        buffered: list[str] = []
        announced = False
        try:
            for chunk in chunks:
                if cancelled.is_set():
                    raise _Cancelled(steps)
                if wants_tools and not announced:
                    # Tool output is held back until its JSON is complete; an empty delta lets the
                    # response (headers, role chunk) start as soon as generation has.
                    announced = True
                    yield StreamDelta()
                choice: dict[str, Any] = chunk["choices"][0]  # type: ignore[index,assignment]
                text: str = choice["delta"].get("content") or ""
                finish_reason = choice.get("finish_reason") or finish_reason
                if not text:
                    continue
                if wants_tools:
                    buffered.append(text)  # a tool call is only known once its JSON is complete
                else:
                    yield StreamDelta(content=text)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        completion_tokens = max(steps - (1 if finish_reason == "stop" else 0), 0)
        logger.debug("generated %d tokens in %.3f s", completion_tokens, time.perf_counter() - started)
        usage = Usage(prompt_tokens=prepared.prompt_tokens, completion_tokens=completion_tokens)
        if wants_tools:
            content, calls = parse_tool_output("".join(buffered))
            yield StreamDelta(
                content=content, tool_calls=tuple(calls),
                finish_reason="tool_calls" if calls else ("length" if finish_reason == "length" else "stop"),
                usage=usage,
            )
            return
        yield StreamDelta(finish_reason="length" if finish_reason == "length" else "stop", usage=usage)
