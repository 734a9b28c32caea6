"""Local-first, OpenAI-compatible agentic LLM server."""
