"""Embedded backend: a GGUF model in-process through llama-cpp-python.

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
import contextlib
import ctypes
import json
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.llm.llamacpp_grammar import GrammarCompiler, GrammarPlan
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
from backend.llm.schema_limits import SchemaLimits
from backend.llm.tool_prompt import parse_tool_output, tool_system_prompt
from backend.metrics import Metrics
from backend.per_user_limits import PerUserLimit

logger = logging.getLogger(__name__)

_END = object()


PREPARATION_THREADS = 2
"""Threads that build grammars and count prompts. Each job is bounded (the schema limits, and a prompt
longer than the context can hold is refused from its length before the template runs), so two suffice."""


class _Cancelled(Exception):
    """Raised inside the worker when the consumer went away; carries the tokens generated until then."""

    def __init__(self, tokens: int) -> None:
        super().__init__(tokens)
        self.tokens = tokens


class _Abandoned(Exception):
    """Raised in the preparation thread when the request went away; its result is never used."""


@dataclass(frozen=True)
class _Prepared:
    """A request that fits the model: what the worker needs to generate."""

    prompt_messages: list[dict[str, Any]]
    prompt_tokens: int
    grammar: Any


def longest_token_bytes(vocab: Any, n_vocab: int) -> int:
    """Bytes of the vocabulary's longest token (special tokens as text): no token covers more of a prompt."""
    import llama_cpp

    buffer = (ctypes.c_char * 256)()
    longest = 1
    for token in range(n_vocab):
        written = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, True)
        longest = max(longest, abs(written))  # negative: the piece is longer than the buffer, by that much
    return longest


class LlamaCppBackend:
    """The embedded llama.cpp backend."""

    name = "llamacpp"

    def __init__(
        self, model_path: Path, *, n_ctx: int, n_threads: int | None, max_queue: int,
        queue_timeout_s: float, metrics: Metrics, max_queue_per_user: int | None = None,
    ) -> None:
        from llama_cpp import Llama, llama_chat_format

        self._llama = Llama(
            # Default as llama-cpp-python: half the cores. llama.cpp's threads spin at barriers, so using
            # every core lets any other load (HTTP, tools, tests) slow generation down many times over.
            model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads or max((os.cpu_count() or 2) // 2, 1),
            verbose=False,
        )
        template = self._llama.metadata.get("tokenizer.chat_template")
        vocab = self._llama._model
        self._formatter = (
            llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.token_get_text(vocab.token_eos()),
                bos_token=vocab.token_get_text(vocab.token_bos()),
            )
            if template
            else None
        )
        self.default_model = model_path.name.removesuffix(".gguf")
        self._created = int(model_path.stat().st_mtime)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._preparation = ThreadPoolExecutor(max_workers=PREPARATION_THREADS, thread_name_prefix="llamacpp-prep")
        self._max_queue = max_queue
        self._per_user = PerUserLimit(
            "generations on the embedded model", min(max_queue_per_user or max_queue, max_queue)
        )
        self._queue_timeout_s = queue_timeout_s
        self._in_queue = 0
        self._metrics = metrics
        self.max_token_bytes = longest_token_bytes(vocab.vocab, self._llama.n_vocab())
        self.grammars = GrammarCompiler(vocab.vocab, SchemaLimits.for_context(n_ctx, self.max_token_bytes))

    # --- the port

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=self.default_model, created=self._created, owned_by="local")]

    async def health(self) -> BackendHealth:
        return BackendHealth(ok=True, backend=self.name, model=self.default_model, detail="embedded model loaded")

    async def aclose(self) -> None:
        await asyncio.to_thread(self._preparation.shutdown, True, cancel_futures=True)
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
        await asyncio.to_thread(self._llama.close)

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[StreamDelta, None]:
        if model != self.default_model:
            raise ModelNotFound(model)
        self._check_room()  # a full queue is a 503 for everyone, before any one user's share
        # The request's place in the queue and the user's share, both held from admission (preparation
        # included, so concurrent arrivals see each other) until the worker is done with the job.
        holds = contextlib.ExitStack()
        self._in_queue += 1
        self._metrics.queue_depth.inc()
        holds.callback(self._leave_queue)
        try:
            if options.user is not None:
                holds.enter_context(self._per_user.hold(options.user))
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

    def _check_room(self) -> None:
        if self._in_queue >= self._max_queue:
            raise BackendBusy(f"The embedded model has {self._in_queue} requests queued; retry shortly.", 2)

    def _leave_queue(self) -> None:
        """The job is over (finished, failed, refused in preparation, or skipped as cancelled)."""
        self._in_queue -= 1
        self._metrics.queue_depth.dec()

    async def _prepare(
        self, messages: list[ChatMessage], options: GenerationOptions, plan: GrammarPlan | None
    ) -> _Prepared:
        """Grammar and prompt count on the preparation pool; a request cancelled meanwhile never reaches the worker."""
        abandoned = threading.Event()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._preparation, self._prepare_now, messages, options, plan, abandoned
            )
        finally:
            abandoned.set()  # after a cancellation the thread stops at its next step; its result is dropped

    # --- inside the preparation threads

    def _prepare_now(
        self, messages: list[ChatMessage], options: GenerationOptions, plan: GrammarPlan | None,
        abandoned: threading.Event,
    ) -> _Prepared:
        n_ctx = self._llama.n_ctx()
        prompt_messages = self._prompt_messages(messages, options)
        # No token covers more than `max_token_bytes` of text (nor a character less than a byte), and every
        # message takes at least one token of the template: a prompt past the context by this lower bound
        # is refused before the template and tokenizer, whose time grows with it, ever see it.
        chars = sum(len(str(message["content"])) for message in prompt_messages)
        at_least = max(-(-chars // self.max_token_bytes), len(prompt_messages) if self._formatter else 0)
        if at_least >= n_ctx:
            raise UnsupportedRequest(
                f"The messages take at least {at_least} tokens; this model's context holds {n_ctx}.", "messages"
            )
        if abandoned.is_set():
            raise _Abandoned
        grammar = self.grammars.build(plan) if plan is not None else None
        if abandoned.is_set():
            raise _Abandoned
        prompt_tokens = self._count_prompt_tokens(prompt_messages)
        if prompt_tokens >= n_ctx:
            raise UnsupportedRequest(
                f"The messages take {prompt_tokens} tokens; this model's context holds {n_ctx}.", "messages"
            )
        return _Prepared(prompt_messages, prompt_tokens, grammar)

    def _prompt_messages(self, messages: list[ChatMessage], options: GenerationOptions) -> list[dict[str, Any]]:
        """Chat-template input: tool calls and results written as text the small models can follow."""
        rendered: list[dict[str, Any]] = []
        for message in messages:
            if message.role == "tool":
                rendered.append({"role": "user", "content": f"Result of tool call {message.tool_call_id or ''}:\n"
                                 f"{message.content or ''}"})
            elif message.role == "assistant" and message.tool_calls:
                calls = [{"name": call.name, "arguments": json.loads(call.arguments or "{}")}
                         for call in message.tool_calls]
                rendered.append({"role": "assistant", "content": json.dumps({"tool_calls": calls})})
            else:
                rendered.append({"role": message.role, "content": message.content or ""})
        if options.tools and options.tool_choice != "none":
            instructions = tool_system_prompt(list(options.tools), options.tool_choice)
            if rendered and rendered[0]["role"] == "system":
                rendered[0] = {"role": "system", "content": f"{rendered[0]['content']}\n\n{instructions}"}
            else:
                rendered.insert(0, {"role": "system", "content": instructions})
        return rendered

    def _count_prompt_tokens(self, prompt_messages: list[dict[str, Any]]) -> int:
        if self._formatter is None:
            text = "\n".join(str(message["content"]) for message in prompt_messages)
        else:
            text = self._formatter(messages=prompt_messages).prompt  # type: ignore[arg-type]
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

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
