"""The LLM port and its adapters (embedded llama.cpp, Ollama, OpenAI-compatible upstreams)."""
