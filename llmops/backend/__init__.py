"""The embedded Ollama-compatible backend: llama.cpp inference behind Ollama's HTTP API."""
from .engine import Engine, LlamaEngine, Stats
from .metrics import BackendMetrics
from .model import ModelInfo, default_model_path, resolve_model_path
from .options import BadRequest, GenOptions
from .scheduler import BUSY_MESSAGE, Scheduler, ServerBusy
from .server import create_app, serve_forever, start

__all__ = [
    "BUSY_MESSAGE", "BackendMetrics", "BadRequest", "Engine", "GenOptions", "LlamaEngine", "ModelInfo",
    "Scheduler", "ServerBusy", "Stats", "create_app", "default_model_path", "resolve_model_path",
    "serve_forever", "start",
]
