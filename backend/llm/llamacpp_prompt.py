"""The embedded model's prompt: one rendering shared by the llama-server engine and the in-process one.

Small models have no tool API of their own, so tool calls and tool results are written into the
conversation as text they can follow, and the tools are described in the system message. The GGUF's
own chat template (read from its metadata) then turns the messages into the prompt text.

A prompt far past the context is refused from its length alone, before the template and the
tokenizer, whose time grows with it, ever see it: no token covers more than `max_token_bytes` of text
(nor a character less than a byte), and every message takes at least one token of the template.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

from backend.llm.port import ChatMessage, GenerationOptions, UnsupportedRequest
from backend.llm.tool_prompt import tool_system_prompt


def longest_token_bytes(vocab: Any, n_vocab: int) -> int:
    """Bytes of the vocabulary's longest token (special tokens as text): no token covers more of a prompt."""
    import llama_cpp

    buffer = (ctypes.c_char * 256)()
    longest = 1
    for token in range(n_vocab):
        written = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, True)
        longest = max(longest, abs(written))  # negative: the piece is longer than the buffer, by that much
    return longest


def prompt_messages(messages: list[ChatMessage], options: GenerationOptions) -> list[dict[str, Any]]:
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


class ChatPrompt:
    """The model's chat template and the facts of its vocabulary a prompt is checked against."""

    def __init__(self, llama: Any) -> None:
        """`llama` is a `llama_cpp.Llama`; one loaded with `vocab_only=True` suffices."""
        from llama_cpp import llama_chat_format

        template = llama.metadata.get("tokenizer.chat_template")
        model = llama._model
        self._formatter = (
            llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(model.token_eos()),
                bos_token=model.token_get_text(model.token_bos()),
            )
            if template
            else None
        )
        self.n_vocab: int = llama.n_vocab()
        self.max_token_bytes = longest_token_bytes(model.vocab, self.n_vocab)

    def check_fits(self, rendered: list[dict[str, Any]], n_ctx: int) -> None:
        """Refuse messages that cannot fit `n_ctx` tokens, judged from their length alone (microseconds)."""
        chars = sum(len(str(message["content"])) for message in rendered)
        at_least = max(-(-chars // self.max_token_bytes), len(rendered) if self._formatter else 0)
        if at_least >= n_ctx:
            raise UnsupportedRequest(
                f"The messages take at least {at_least} tokens; this model's context holds {n_ctx}.", "messages"
            )

    def text(self, rendered: list[dict[str, Any]]) -> tuple[str, list[str]]:
        """The prompt text and the template's stop strings (its end-of-turn marker)."""
        if self._formatter is None:
            return "\n".join(str(message["content"]) for message in rendered), []
        result = self._formatter(messages=rendered)  # type: ignore[arg-type]
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return result.prompt, [word for word in stop if word]
