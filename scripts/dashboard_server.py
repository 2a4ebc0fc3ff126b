"""Serve the dashboard under waitress (a production WSGI server); the supervisor runs this."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmops.dashboard import main  # noqa: E402

if __name__ == "__main__":
    main()
