"""The dashboard on :3001: a thin entry point over llmops.dashboard (create_app and main)."""
from llmops.dashboard import create_app, main

__all__ = ["create_app", "main"]

if __name__ == "__main__":
    main()
