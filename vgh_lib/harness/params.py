"""Notebook parameters: frozen dataclasses that validate before anything runs.

Every notebook has one parameter class, a subclass of :class:`NotebookParams` in its experiment
module, with its run profiles (``PROFILES``) beside its fields. The
notebook's ``parameters`` cell holds the same names as literals, with the
dataclass defaults as values; the next cell rebuilds the dataclass from them, so
plain ``papermill -p`` runs are validated too. ``vgh run`` validates the same
way before it starts a kernel, so a bad value never executes or writes anything.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from vgh_lib.errors import ParameterError

PROFILE_NAMES = ("smoke", "default", "paper")
"""Run profiles: ``smoke`` (seconds, for tests), ``default`` (the published book,
2-core CPU), ``paper`` (larger, meant for a GPU)."""




def spec(default: Any, *, lo: float | None = None, hi: float | None = None,
         choices: tuple | None = None, help: str = "") -> Any:
    """A dataclass field with its allowed range (inclusive) or choices."""
    return field(default=default,
                 metadata={"lo": lo, "hi": hi, "choices": choices, "help": help})


def _describe(f: dataclasses.Field) -> str:
    m = f.metadata
    if m.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    lo, hi = m.get("lo"), m.get("hi")
    kind = _type_name(f)
    if lo is not None and hi is not None:
        return f"{kind} in [{lo}, {hi}]"
    if lo is not None:
        return f"{kind} >= {lo}"
    if hi is not None:
        return f"{kind} <= {hi}"
    return kind


def _kind(f: dataclasses.Field) -> str:
    """The declared type as text: 'int', 'float', 'bool', 'str' or 'tuple[float, ...]'."""
    t = f.type
    if isinstance(t, str):
        return t
    if getattr(t, "__origin__", None) is not None:
        return str(t)
    return t.__name__


def _type_name(f: dataclasses.Field) -> str:
    t = _kind(f)
    return {"tuple[float, ...]": "list of float", "tuple[int, ...]": "list of int"}.get(t, t)


def _check_scalar(name: str, value: Any, kind: str, f: dataclasses.Field) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParameterError(f"parameter {name!r} must be a bool (true/false), got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"parameter {name!r} must be an int ({_describe(f)}), got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"parameter {name!r} must be a float ({_describe(f)}), got {value!r}")
        value = float(value)
        if value != value:
            raise ParameterError(f"parameter {name!r} must be a number ({_describe(f)}), got NaN")
    elif kind == "str":
        if not isinstance(value, str):
            raise ParameterError(f"parameter {name!r} must be a string ({_describe(f)}), got {value!r}")
    m = f.metadata
    if m.get("choices") is not None and value not in m["choices"]:
        raise ParameterError(f"parameter {name!r} = {value!r} is not allowed; use {_describe(f)}")
    lo, hi = m.get("lo"), m.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParameterError(f"parameter {name!r} = {value!r} is out of range; allowed: {_describe(f)}")
    return value


ALIASES = {"seeds": "grpo_seeds", "lr": "grpo_lr"}
"""Old parameter names and the names every study now uses for the same idea (one vocabulary:
``grpo_`` names what GRPO uses, as in ``grpo_steps``; ``recipe_seeds``, ``pretrain_lr`` and
``control_lr`` name other things). The old names are still read wherever parameters come in:
``vgh run -p seeds ...``, papermill, and the records and claims files committed before the
rename."""


def canonical_names(values: Mapping[str, Any], names: list[str] | None = None) -> dict[str, Any]:
    """``values`` with the old names of :data:`ALIASES` read as today's (only where today's name
    is one of ``names``, when given); refuses a mapping that gives a parameter under both."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        new = ALIASES.get(name, name)
        if names is not None and (name in names or new not in names):
            new = name
        if new in out or (new != name and new in values):
            raise ParameterError(f"parameter {name!r} is the old name of {new!r}; give only {new!r}")
        out[new] = value
    return out


DEVICES = ("cpu", "cuda", "auto")
"""Torch devices a study can run on (``auto``: CUDA where there is one)."""


@dataclass(frozen=True)
class NotebookParams:
    """Base class: every study's ``seed`` and ``profile``. Subclasses declare their own fields
    with :func:`spec`, and take :class:`Workers` and :class:`OnDevice` where they use them.

    Types allowed: ``int``, ``float``, ``bool``, ``str``, ``tuple[float, ...]``
    and ``tuple[int, ...]`` (lists are accepted and stored as tuples).
    """

    # each study's run profiles: overrides of its defaults by profile name (the defaults are `default`)
    PROFILES: ClassVar[dict] = {}

    seed: int = spec(0, lo=0, hi=2**31 - 1,
                     help="seeds every random draw of the run")
    profile: str = spec("default", choices=PROFILE_NAMES, help="run profile (set by `vgh run --profile`)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = _kind(f)
            if kind.startswith("tuple["):
                elem = kind[len("tuple["):].split(",")[0].strip()
                if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                    raise ParameterError(f"parameter {f.name!r} must be a list ({_describe(f)}), got {value!r}")
                if len(value) == 0:
                    raise ParameterError(f"parameter {f.name!r} must not be empty ({_describe(f)})")
                checked = tuple(_check_scalar(f.name, v, elem, f) for v in value)
                object.__setattr__(self, f.name, checked)
            else:
                object.__setattr__(self, f.name, _check_scalar(f.name, value, kind, f))
        self.check()

    def check(self) -> None:
        """Cross-field checks; subclasses override and raise :class:`ParameterError`."""

    # ------------------------------------------------------------------ helpers
    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "NotebookParams":
        """Build from a mapping, refusing names the notebook does not have (old names of
        :data:`ALIASES` are read as today's)."""
        values = canonical_names(values, cls.names())
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(cls.names())}")
        try:
            return cls(**dict(values))
        except TypeError as exc:  # pragma: no cover - dataclass signature errors
            raise ParameterError(str(exc)) from exc

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> "NotebookParams":
        """Build from a notebook's globals, where its ``parameters`` cell (and papermill's
        injected cell) defined one variable per field: ``Params.from_namespace(globals())``."""
        names = cls.names()
        injected = {new: namespace[old] for old, new in ALIASES.items()   # papermill -p OLD_NAME
                    if new in names and old in namespace}
        namespace = {**namespace, **injected}
        missing = [n for n in names if n not in namespace]
        if missing:
            raise ParameterError(f"the notebook defines no parameter(s) {', '.join(map(repr, missing))}; "
                                 f"its parameters cell must set: {', '.join(cls.names())}")
        return cls.from_mapping({n: namespace[n] for n in names})

    @classmethod
    def parse_value(cls, name: str, text: str) -> Any:
        """Convert a command-line string to the declared type of ``name``."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fields and ALIASES.get(name) in fields:   # an old name
            name = ALIASES[name]
        if name not in fields:
            raise ParameterError(f"unknown parameter {name!r}; allowed: {', '.join(cls.names())}")
        f = fields[name]
        kind = _kind(f)
        try:
            if kind == "int":
                return int(text)
            if kind == "float":
                return float(text)
            if kind == "bool":
                low = text.strip().lower()
                if low in ("true", "1", "yes"):
                    return True
                if low in ("false", "0", "no"):
                    return False
                raise ValueError(text)
            if kind.startswith("tuple["):
                parsed = json.loads(text) if text.strip().startswith("[") else \
                    [p for p in text.split(",") if p.strip()]
                conv = int if "int" in kind else float
                return tuple(conv(p) for p in parsed)
            return text
        except (ValueError, TypeError, json.JSONDecodeError):
            raise ParameterError(
                f"parameter {name!r} = {text!r} cannot be read as {_type_name(f)}; "
                f"allowed: {_describe(f)}") from None

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(name, allowed values, default, help) for each parameter."""
        return [(f.name, _describe(f), f.default, f.metadata.get("help", ""))
                for f in dataclasses.fields(cls)]

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Workers:
    """Mixin of a study that runs its jobs in worker processes."""

    jobs: int = spec(2, lo=1, hi=256, help="worker processes")


@dataclass(frozen=True)
class OnDevice:
    """Mixin of a study that runs torch models."""

    device: str = spec("cpu", choices=DEVICES, help="torch device")


@dataclass(frozen=True)
class RealModel:
    """Mixin of a study of a real pretrained LM: which model, and what its reward targets."""

    model_path: str = spec("smollm2", help="'smollm2' (the shipped SmolLM2-135M-Instruct), 'tiny' "
                                           "(a tiny random llama), a .gguf file or a local causal-LM directory")
    target: str = spec("task", choices=("task", "greedy"),
                       help="reward target: the task's answer, or the model's own greedy answer")
