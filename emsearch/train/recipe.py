"""A training run's recipe: the recipe file with options over it, the checks made before minutes of reading
data, and the run's own record of it (OUT/train_config.json), the config `--resume` replays.

    cfg, given = read_recipe("training/default.json", steps=100, out="runs/try")
    train(cfg, given=given)
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from emsearch.atomic import write_text_atomic
from emsearch.config import ConfigError, TrainConfig, load_json, resolve_model_config, to_json
from emsearch.errors import EmsearchError
from emsearch.train.data import PairDataset

RUN_CONFIG = "train_config.json"


def read_recipe(path: str | Path | None = None, **overrides: Any) -> tuple[TrainConfig, frozenset[str]]:
    """The recipe at `path` (the defaults without one) with every override that is not None put over it, and the
    names of the fields the file or an override sets: those a resumed run must agree on.

    Paths become strings and lists tuples, as in a recipe file. A `batch_tokens` given without `batch_pairs` sets
    batch_pairs 0 (a token budget asked for is a token budget used); a `preset` drops the file's `model`.
    """
    cfg = load_json(TrainConfig, path) if path else TrainConfig()
    given = {k: _as_recipe(v) for k, v in overrides.items() if v is not None}
    if "batch_tokens" in given and "batch_pairs" not in given:
        given["batch_pairs"] = 0
    cfg = replace(cfg, **given)
    if "preset" in given:
        cfg = replace(cfg, model=None)
    names = set(given) | (set(json.loads(Path(path).read_text(encoding="utf-8"))) if path else set())
    return cfg, frozenset(names)


def _as_recipe(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(map(str, value))
    return str(value) if isinstance(value, Path) else value


def run_config(out: str | Path) -> TrainConfig:
    """The config a run in `out` was started with (its model shape set from the data)."""
    return load_json(TrainConfig, Path(out) / RUN_CONFIG)


def save_run_config(out: str | Path, cfg: TrainConfig) -> None:
    write_text_atomic(Path(out) / RUN_CONFIG, to_json(cfg) + "\n")


def checked(cfg: TrainConfig, *, resume: bool, given: Collection[str] | None = None) -> TrainConfig:
    """The config the run will use, checked before minutes of reading data. On resume that is the recorded one,
    and every field in `given` (default: those `cfg` sets away from the defaults) must agree with it."""
    out = Path(cfg.out)
    if not cfg.data and not resume:
        raise EmsearchError("no training data: give --data FILE or a recipe with \"data\"")
    if resume:
        cfg = _resumed(cfg, out, given)
    elif (out / "checkpoint").exists():
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    _check_settings(cfg)
    return cfg


def _resumed(cfg: TrainConfig, out: Path, given: Collection[str] | None) -> TrainConfig:
    """--resume replays the run recorded in OUT; a field that disagrees with the record would be silently
    ignored, so it is refused."""
    path = out / RUN_CONFIG
    if path.is_file():
        recorded = run_config(out)
        if given is None:
            default = TrainConfig()
            given = {f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}
        differ = sorted(k for k in set(given) - {"out", "model"} if getattr(recorded, k) != getattr(cfg, k))
        if differ:
            raise EmsearchError(f"{path} records a different {', '.join(differ)}: --resume continues that run as "
                                "it was started; drop the change, or start a new run with another --out")
    if not (out / "checkpoint" / "state.json").is_file():
        raise FileNotFoundError(f"nothing to resume in {out}: no checkpoint/ (start without --resume)")
    return run_config(out)


def _check_settings(cfg: TrainConfig) -> None:
    """Each objective and teacher stage has what it needs, at least one objective trains, the batches can be cut."""
    if min(cfg.xtr_weight, cfg.contrastive_weight) < 0 or not (cfg.xtr_weight or cfg.contrastive_weight):
        raise ConfigError("xtr_weight and contrastive_weight must be >= 0 and not both 0 (nothing would train)")
    if not 0 <= cfg.batch_pairs <= PairDataset.CHUNK_PAIRS:
        raise ConfigError(f"batch_pairs must be between 0 and {PairDataset.CHUNK_PAIRS:,}, got {cfg.batch_pairs}")
    if cfg.batch_langs and not 0 < cfg.batch_langs <= cfg.batch_pairs:
        raise ConfigError(f"batch_langs {cfg.batch_langs} needs batch_pairs of at least as many pairs "
                          f"(got {cfg.batch_pairs}); 0 mixes languages freely")
    if cfg.distill_weight < 0 or (cfg.distill_weight and not cfg.teacher_cache):
        raise ConfigError("distill_weight must be >= 0, and > 0 needs a teacher_cache (`emsearch cache-teacher`)")
    if cfg.teacher_init < 0 or (cfg.teacher_init and (not cfg.teacher_cache or cfg.init_from)):
        raise ConfigError("teacher_init must be >= 0, and > 0 needs a teacher_cache (`emsearch cache-teacher "
                          "--pieces`) and no init_from (both would start the token table)")
    if cfg.teacher_prior < 0 or (cfg.teacher_prior and not cfg.teacher_cache):
        raise ConfigError("teacher_prior must be >= 0, and > 0 needs a teacher_cache (`emsearch cache-teacher "
                          "--pieces`)")
    if (cfg.mono and not cfg.teacher_prior) or cfg.mono_epochs < 0:
        raise ConfigError("mono needs teacher_prior > 0 (its piece counts set how far each row moves), and "
                          "mono_epochs must be >= 0")
    if not 0 <= cfg.margin < 2:
        raise ConfigError(f"margin is taken off a cosine, so it must be in [0, 2), got {cfg.margin}")
    if cfg.init_from and not (Path(cfg.init_from) / "model.safetensors").is_file():
        raise FileNotFoundError(f"init_from {cfg.init_from}: not a model bundle (no model.safetensors)")
    resolve_model_config(cfg)  # an unknown preset fails here
