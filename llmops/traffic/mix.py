"""What each request is drawn to be: its model (`--model a,b:3`, a weighted mix) and its priority (`--priority-mix
0:20,9:80`, shares in percent), each drawn reproducibly from the run's seed."""
from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass

from ..proxy.queue import PRIORITY_MAX, PRIORITY_MIN

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@:-]*$")
_NUMBER = r"\d+(\.\d*)?|\.\d+"
PRIORITY_RANGE = (PRIORITY_MIN, PRIORITY_MAX)  # the proxy queue's priorities, lower first (docs/queue.md)


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
            if sep and re.fullmatch(_NUMBER, tail):
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


class _Draw:
    """Draws one of `values` by `weights` from its own random stream: the same seed, the same sequence."""

    def __init__(self, values: tuple, weights: tuple[float, ...], rng: random.Random) -> None:
        self.values, self._rng = values, rng
        total = sum(weights)
        running, self._edges = 0.0, []
        for w in weights:
            running += w / total
            self._edges.append(running)

    def next(self):
        if len(self.values) == 1:
            return self.values[0]
        index = bisect.bisect_right(self._edges, self._rng.random())
        return self.values[min(index, len(self.values) - 1)]


class ModelPicker(_Draw):
    """Draws the model of request i; the same seed gives the same sequence of models."""

    def __init__(self, mix: ModelMix, seed: int) -> None:
        self.mix = mix
        super().__init__(mix.models, mix.weights, random.Random(seed))


@dataclass(frozen=True)
class PriorityMix:
    """Priorities (0-255, lower first) with their shares of the requests in percent; the shares sum to 100."""

    priorities: tuple[int, ...]
    percents: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> PriorityMix:
        """`0:20,9:80`: 20 % of the requests at priority 0, 80 % at priority 9."""
        form = "PRIORITY:PERCENT,... like 0:20,9:80"
        priorities, percents = [], []
        for part in (p.strip() for p in str(text).split(",")):
            head, sep, tail = part.partition(":")
            if not sep:
                raise ValueError(f"{part!r} is not PRIORITY:PERCENT (expected {form})")
            if not re.fullmatch(r"\d+", head.strip()):
                raise ValueError(f"{head.strip()!r} is not a priority (an integer "
                                 f"{PRIORITY_RANGE[0]}-{PRIORITY_RANGE[1]}, lower first)")
            priority = int(head)
            if not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
                raise ValueError(f"priority {priority} is outside {PRIORITY_RANGE[0]}-{PRIORITY_RANGE[1]}")
            if not re.fullmatch(_NUMBER, tail.strip()) or not float(tail) > 0:
                raise ValueError(f"{part!r}: the share must be a percentage > 0, not {tail.strip()!r}")
            if priority in priorities:
                raise ValueError(f"priority {priority} is named twice in {text!r}")
            priorities.append(priority)
            percents.append(float(tail))
        if abs(sum(percents) - 100) > 1e-6:
            raise ValueError(f"the shares of {text!r} sum to {sum(percents):g} %, not 100")
        return cls(tuple(priorities), tuple(percents))

    @classmethod
    def single(cls, priority: int) -> PriorityMix:
        """Every request at one priority (--priority N)."""
        return cls((priority,), (100.0,))

    def __str__(self) -> str:
        return ",".join(f"{p}:{s:g}" for p, s in zip(self.priorities, self.percents, strict=True))

    def share(self, priority: int) -> float:
        """The priority's share as a fraction (0.2 for 20 %)."""
        return self.percents[self.priorities.index(priority)] / 100


class PriorityPicker(_Draw):
    """Draws the priority of request i from a stream of its own (the model draws are not shifted by it)."""

    def __init__(self, mix: PriorityMix, seed: int) -> None:
        self.mix = mix
        super().__init__(mix.priorities, mix.percents, random.Random(f"priority:{seed}"))
