"""Traffic generator: OpenAI-format load through the proxy, measured the way LLM serving is measured."""
from .client import RequestResult
from .config import TrafficConfig
from .preflight import PreflightError
from .runner import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_PREFLIGHT, EXIT_USAGE, RunResult, run, run_async

__all__ = ["TrafficConfig", "RequestResult", "RunResult", "PreflightError", "run", "run_async",
           "EXIT_OK", "EXIT_ERRORS", "EXIT_USAGE", "EXIT_PREFLIGHT", "EXIT_INTERRUPTED"]
