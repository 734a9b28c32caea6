"""The default system prompt for chat requests that bring none, per model (like an Ollama Modelfile's SYSTEM).

`DEFAULT_SYSTEM_PROMPT=auto` uses the prompt measured for the model (`tests/eval/system_prompt_eval.py`
scores candidates on everyday questions; the README gives the figures); `none` sends no prompt; any other
text is the prompt for every model. Models without a measured prompt (Ollama's, an upstream's) get none
under `auto`: their own template already carries one.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.config import Settings
from backend.llm.port import ChatMessage, LLMBackend

MEASURED_PROMPTS: dict[str, str] = {
    # 20/25 everyday questions right, against 16/25 with no prompt (greedy, 40 tokens; see the README).
    "SmolLM2-135M-Instruct.Q4_1": "Answer the question directly in one English sentence.",
}


def default_system_prompt(model: str, llm: LLMBackend, settings: Settings) -> str | None:
    configured = settings.default_system_prompt.strip()
    if configured.lower() == "none":
        return None
    if configured.lower() != "auto":
        return configured
    if llm.name != "llamacpp":
        return None
    return MEASURED_PROMPTS.get(model)


def with_default_system_prompt(
    messages: Sequence[ChatMessage], model: str, llm: LLMBackend, settings: Settings
) -> list[ChatMessage]:
    """The messages, with the default system prompt first when they hold no system message."""
    if any(message.role == "system" for message in messages):
        return list(messages)
    prompt = default_system_prompt(model, llm, settings)
    return [ChatMessage("system", prompt), *messages] if prompt else list(messages)
