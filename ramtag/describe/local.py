"""A local transformers causal LM as the describer (``--llm hf:REPO_OR_DIR``): no endpoint, no key.

Chat models get the prompt through their chat template as a user turn; base models get it as plain
text. Sampling follows the official descriptions (temperature 0.99, at most 77 new tokens).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..paths import offline
from .errors import LLMError
from .prompts import MAX_TOKENS, TEMPERATURE


class LocalCausalLM:
    """Generates answers with ``AutoModelForCausalLM``; one generation at a time."""

    max_concurrency: int | None = 1

    def __init__(self, name: str, *, device: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = Path(name).expanduser()
        self.name = str(local.resolve()) if local.is_dir() else name
        self.model_name = name
        self.requests = 0
        self._lock = threading.Lock()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.name, local_files_only=offline())
            self.model = AutoModelForCausalLM.from_pretrained(self.name, local_files_only=offline())
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise LLMError(f"cannot load the language model {name!r}: {first}") from None
        self.model.to(device).eval()
        self.device = torch.device(device)

    @property
    def identity(self) -> str:
        return f"hf:{self.name}"

    def _inputs(self, prompt: str) -> Any:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        return self.tokenizer(prompt, return_tensors="pt")

    def complete(self, prompt: str, n: int) -> list[str]:
        import torch

        inputs = self._inputs(prompt).to(self.device)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with self._lock, torch.inference_mode():
            self.requests += 1
            output = self.model.generate(
                **inputs,
                do_sample=True,
                temperature=TEMPERATURE,
                max_new_tokens=MAX_TOKENS,
                num_return_sequences=n,
                pad_token_id=pad,
            )
        start = inputs["input_ids"].shape[1]
        return [
            self.tokenizer.decode(row[start:], skip_special_tokens=True).strip() for row in output
        ]
