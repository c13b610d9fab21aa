"""Open-set tags: LLM descriptions of any tag name, and their CLIP text embeddings.

``describe`` writes a descriptions JSON (and optionally label embeddings); the tagger only ever
reads those files (through ``ramtag.openset``), so the two sides share a file format and nothing else.

    prompts     the RAM++ questions and ramtag's own templates
    endpoint    OpenAI-compatible chat-completions over HTTP (retries, ``n`` fallback)
    local       a transformers causal LM on this machine
    keys        API keys: flag, 0600 key file, environment; never shown
    cache       answers kept by (endpoint, model, prompt, tag)
    describer   tags → 51 descriptions each, concurrently, resumable
    encoder     the CLIP text tower, with OpenAI's text cleaning
    files       descriptions JSON and label-embedding safetensors
"""

from __future__ import annotations

from .describer import describe, describe_with_templates
from .errors import LLMError
from .files import (
    LabelEmbeddings,
    embed_descriptions,
    read_descriptions,
    read_embeddings,
    write_descriptions,
    write_embeddings,
)

__all__ = [
    "LLMError",
    "LabelEmbeddings",
    "describe",
    "describe_with_templates",
    "embed_descriptions",
    "read_descriptions",
    "read_embeddings",
    "write_descriptions",
    "write_embeddings",
]
