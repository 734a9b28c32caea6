"""Embedded backend: a GGUF model in-process through llama-cpp-python.

One model, one context: generations run one at a time on a single worker thread whose job queue
serialises them (concurrent use of one llama context corrupts it). Each generation checks a
cancellation flag between tokens, so a client that leaves stops its generation at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
from backend.llm.tool_prompt import parse_tool_output, tool_output_schema, tool_system_prompt
from backend.metrics import Metrics

logger = logging.getLogger(__name__)

_END = object()


class _Cancelled(Exception):
    """Raised inside the worker when the consumer went away; carries the tokens generated until then."""

    def __init__(self, tokens: int) -> None:
        super().__init__(tokens)
        self.tokens = tokens


class LlamaCppBackend:
    """The embedded llama.cpp backend."""

    name = "llamacpp"

    def __init__(
        self, model_path: Path, *, n_ctx: int, n_threads: int | None, max_queue: int,
        queue_timeout_s: float, metrics: Metrics,
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
        self._max_queue = max_queue
        self._queue_timeout_s = queue_timeout_s
        self._in_queue = 0
        self._metrics = metrics
        self._grammar_cache: dict[str, Any] = {}

    # --- the port

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=self.default_model, created=self._created, owned_by="local")]

    async def health(self) -> BackendHealth:
        return BackendHealth(ok=True, backend=self.name, model=self.default_model, detail="embedded model loaded")

    async def aclose(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
        await asyncio.to_thread(self._llama.close)

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamDelta]:
        if model != self.default_model:
            raise ModelNotFound(model)
        if self._in_queue >= self._max_queue:
            raise BackendBusy(f"The embedded model has {self._in_queue} requests queued; retry shortly.", 2)
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
                grammar = self._grammar_for(options)  # compiling a grammar takes a while: off the loop
                for delta in self._generate(messages, options, grammar, cancelled):
                    put(delta)
            except _Cancelled as stop:
                # Finished generations are counted from their usage; a cancelled one never reports it.
                self._metrics.generations_cancelled.labels(self.name).inc()
                self._metrics.tokens_generated.labels(self.name).inc(stop.tokens)
            except BaseException as error:  # handed to the consumer, who raises it on the loop
                put(error)
            finally:
                put(_END)

        self._in_queue += 1
        self._metrics.queue_depth.inc()
        future = loop.run_in_executor(self._executor, produce)
        future.add_done_callback(lambda _: self._leave_queue())
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

    # --- inside the worker thread

    def _leave_queue(self) -> None:
        self._in_queue -= 1
        self._metrics.queue_depth.dec()

    def _grammar_for(self, options: GenerationOptions) -> Any:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        schema: dict[str, Any] | None = None
        if options.tools and options.tool_choice != "none":
            schema = tool_output_schema(list(options.tools), options.tool_choice)
        elif options.json_schema is not None:
            schema = options.json_schema
        elif options.json_object:
            key = "json_object"
            if key not in self._grammar_cache:
                self._grammar_cache[key] = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
            return self._grammar_cache[key]
        if schema is None:
            return None
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammar_cache:
            try:
                self._grammar_cache[key] = LlamaGrammar.from_json_schema(key, verbose=False)
            except Exception as error:
                param = "tools" if options.tools else "response_format"
                raise UnsupportedRequest(f"The JSON schema cannot be turned into a grammar: {error}", param) from None
            if len(self._grammar_cache) > 64:
                self._grammar_cache.pop(next(iter(self._grammar_cache)))
        return self._grammar_cache[key]

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

    def _generate(
        self, messages: list[ChatMessage], options: GenerationOptions, grammar: Any, cancelled: threading.Event
    ) -> Iterator[StreamDelta]:
        prompt_messages = self._prompt_messages(messages, options)
        prompt_tokens = self._count_prompt_tokens(prompt_messages)
        if prompt_tokens >= self._llama.n_ctx():
            raise UnsupportedRequest(
                f"The messages take {prompt_tokens} tokens; this model's context holds {self._llama.n_ctx()}.",
                "messages",
            )
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
            messages=prompt_messages,  # type: ignore[arg-type]
            stream=True,
            max_tokens=options.max_tokens,
            temperature=0.8 if options.temperature is None else options.temperature,
            top_p=0.95 if options.top_p is None else options.top_p,
            stop=list(options.stop),
            seed=options.seed,
            grammar=grammar,
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
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        if wants_tools:
            content, calls = parse_tool_output("".join(buffered))
            yield StreamDelta(
                content=content, tool_calls=tuple(calls),
                finish_reason="tool_calls" if calls else ("length" if finish_reason == "length" else "stop"),
                usage=usage,
            )
            return
        yield StreamDelta(finish_reason="length" if finish_reason == "length" else "stop", usage=usage)
