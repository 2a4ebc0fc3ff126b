"""llmops: run and watch a local LLM serving stack (Ollama or the embedded backend, LiteLLM, Prometheus, dashboard)."""

__version__ = "0.1.0"
