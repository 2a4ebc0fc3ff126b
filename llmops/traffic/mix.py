"""Which model each request goes to: `--model a,b:3` is a weighted mix, drawn reproducibly from the seed."""
from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@:-]*$")


@dataclass(frozen=True)
class ModelMix:
    """Model names with weights; a single model is a mix of one."""

    models: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> ModelMix:
        """`smollm2:135m,gemma3:270m:2`: a trailing `:N` (a plain number) is a weight, default 1.

        Ollama tags contain colons too (`smollm2:135m`), so only a last part that is a number is a weight.
        """
        models, weights = [], []
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                raise ValueError(f"{text!r} has an empty model name (expected a,b or a:2,b:1)")
            name, weight = part, 1.0
            head, sep, tail = part.rpartition(":")
            if sep and re.fullmatch(r"\d+(\.\d*)?|\.\d+", tail):
                name, weight = head, float(tail)
            if not name or not _NAME.match(name):
                raise ValueError(f"{part!r} is not a model name")
            if not weight > 0:
                raise ValueError(f"{part!r}: a weight must be > 0")
            if name in models:
                raise ValueError(f"{name!r} is named twice in {text!r}")
            models.append(name)
            weights.append(weight)
        return cls(tuple(models), tuple(weights))

    def __str__(self) -> str:
        return ",".join(m if w == 1 else f"{m}:{w:g}" for m, w in zip(self.models, self.weights, strict=True))

    @property
    def single(self) -> bool:
        return len(self.models) == 1

    def share(self, model: str) -> float:
        return self.weights[self.models.index(model)] / sum(self.weights)


class ModelPicker:
    """Draws the model of request i; the same seed gives the same sequence of models."""

    def __init__(self, mix: ModelMix, seed: int) -> None:
        self.mix = mix
        self._rng = random.Random(seed)
        total = sum(mix.weights)
        running, self._edges = 0.0, []
        for w in mix.weights:
            running += w / total
            self._edges.append(running)

    def next(self) -> str:
        if self.mix.single:
            return self.mix.models[0]
        index = bisect.bisect_right(self._edges, self._rng.random())
        return self.mix.models[min(index, len(self.mix.models) - 1)]
