#!/usr/bin/env python3
"""Write the proxy's request log as JSON Lines (thin entry point over llmops.requestlog.export)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmops.requestlog.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
