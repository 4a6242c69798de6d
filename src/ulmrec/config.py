"""Settings: one dataclass per pipeline stage, loaded from YAML with ``key=value`` overrides.

The layout follows the paper (section 4): ``data`` -> ``preferences`` -> ``retrieval`` -> ``index`` ->
``tasks`` / ``ranker`` -> ``evaluate``. Each stage's dataclass lives beside the stage (``ulmrec/<stage>/config.py``) and
documents every field; this module composes them, applies overrides and rejects unknown keys.

Priority, lowest first: dataclass defaults < ``configs/default.yaml`` < preset YAML files (in order) <
command-line ``key.sub=value`` overrides (values parsed as YAML, so ``ranker.lr=1e-4`` is a float).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ulmrec.data.config import DataConfig
from ulmrec.errors import ConfigError
from ulmrec.evaluation.config import EvaluateConfig
from ulmrec.indexing.config import IndexConfig
from ulmrec.preferences.config import PreferencesConfig
from ulmrec.ranker.config import RankerConfig
from ulmrec.retrieval.config import RetrievalConfig
from ulmrec.tasks.config import TasksConfig

#: Resource settings: CPU threads and the batch sizes of inference-only passes. They decide how fast and in how
#: much memory an artifact is made, not what the recipe is, and are left out of every stage's fingerprint
#: (:func:`ulmrec.pipeline.stage_params`): changing one never retrains a finished stage and a resumed stage keeps
#: its checkpoints. Their values are recorded in ``stage.json`` (``result_neutral``). Measured on CPU
#: (docs/ARCHITECTURE.md): an inference batch size leaves model and candidates byte-identical; a different
#: *training* thread count can change the last bits of the weights (same seed and thread count: identical bytes).
#: Wall-clock caps (``retrieval.max_minutes``) are *not* here: a cap that cuts training short changes the model.
#: Add a name here, not in a stage's ``params``.
RESULT_NEUTRAL = frozenset({
    "retrieval.num_threads",
    "retrieval.eval_batch_size",
    "index.threads",
    "index.encoder_batch_size",
    "ranker.num_threads",
    "ranker.score_batch_size",
})

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Added:
    """Settings that arrived together, after run directories existed, each with its *legacy* value: the value that
    does what the code did before the setting existed."""

    since: str
    """The commit that added them (provenance only)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """``"section.field"`` -> legacy value."""
    tasks: tuple[str, ...] = ()
    """Tasks added to :data:`ulmrec.tasks.TASKS` (default ratio 0): while a task's ratio is 0 it draws nothing,
    and its name in ``tasks.enabled`` / ``tasks.ratios`` is left out of the fingerprint like a legacy setting."""


#: Every setting (and task) added after run directories existed, in the order they were added. At its legacy value
#: a setting is left out of every stage's fingerprint (:func:`ulmrec.stage.stage_params`), so adding a setting
#: leaves finished stages current and keeps a killed stage's checkpoints resumable; a stage record or checkpoint
#: marker written while some of these were fingerprinted at their legacy value still matches
#: (:func:`ulmrec.stage.accepted_fingerprints`). A new setting goes at the end, with the value that keeps the old
#: behaviour; tests/test_fingerprint_stability.py fails until it does (or until its golden file is regenerated on
#: purpose, which makes every existing run directory rebuild).
ADDED_SETTINGS: tuple[Added, ...] = (
    Added("be6e595", {"ranker.lora_layers": 0, "ranker.next_item_loss": "lm"}),
    Added("e591c7b", {"tasks.hard_negative_pool": 50}),
    Added("ee57c45", {"ranker.share_prefix": False}),
    Added("6149829", {"ranker.index_token_grad": "all"}),
    Added("122bb43", {"ranker.distill_weight": 0.0, "ranker.distill_temperature": 1.0}),
    Added("b5178d4", {"retrieval.train_candidates_folds": 1}),
    Added("de85187", {"ranker.residual_weight": 0.0}),
    Added("7b79bd5", {"ranker.init_adapter": ""}),
    Added("14b4ef5", {"ranker.distill_title_weight": 0.0, "ranker.distill_title_history": 10,
                      "ranker.distill_title_encoder": "all-MiniLM-L6-v2"}),
    Added("04ddf57", tasks=("letter_lookup",)),
    Added("9a75023", {"tasks.candidate_format": "letter_first"}),
    Added("9cf6bbe", {"tasks.exclude_user_items": False}),
)


@dataclass
class Config:
    """All settings of one run."""

    run_dir: str = "runs/default"
    """(str) Directory that receives every artifact of the run."""
    seed: int = 42
    """(int) Global random seed."""
    device: str = "auto"
    """(str) 'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    data: DataConfig = field(default_factory=DataConfig)
    preferences: PreferencesConfig = field(default_factory=PreferencesConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self) -> None:
        if not str(self.run_dir).strip():
            raise ValueError("run_dir must not be empty (it would write into the current directory)")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED} (numpy's range), got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ulmrec.configs").iterdir() if p.name.endswith(".yaml"))


def _read_yaml(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        res = resources.files("ulmrec.configs") / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(f"no config file or preset named {name_or_path!r}; presets: {', '.join(preset_names())}")
        text = res.read_text(encoding="utf-8")
        where = f"preset {name_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return data


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``'ranker.lora.r=16'`` -> ``{'ranker': {'lora': {'r': 16}}}``."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if value is None or isinstance(value, dict | list):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error that lists the known ones."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown setting(s) {', '.join(prefix + u for u in unknown)}; "
                          f"known under {where or 'the top level'}: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where or 'config'}: {err}") from err


def load_config(presets: list[str] | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then ``default.yaml``, then each preset (name or path), then overrides."""
    merged: dict[str, Any] = _read_yaml("default")
    for p in presets or []:
        merged = _merge(merged, _read_yaml(p))
    for o in overrides or []:
        merged = _merge(merged, parse_override(o))
    return from_dict(Config, merged)
