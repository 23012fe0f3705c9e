"""A recipe with options over it, and the checks a resumed run gets from Python as from the command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from emsearch.config import PRESETS, TrainConfig
from emsearch.errors import EmsearchError
from emsearch.train.recipe import checked, read_recipe, run_config, save_run_config


def test_options_go_over_the_recipe_and_are_named_as_given(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"steps": 10, "lr": 0.01, "model": {"dim": 32}}))
    cfg, given = read_recipe(recipe, data=[tmp_path / "a.tsv"], out=tmp_path / "run", batch_tokens=512,
                             preset="tiny", seed=None)
    assert cfg.data == (str(tmp_path / "a.tsv"),) and cfg.out == str(tmp_path / "run")
    assert cfg.batch_tokens == 512 and cfg.batch_pairs == 0  # a token budget asked for is the one used
    assert cfg.preset == "tiny" and cfg.model is None  # a preset names the shape over the recipe's model
    assert cfg.steps == 10 and cfg.seed == TrainConfig.seed
    assert given == {"steps", "lr", "model", "data", "out", "batch_tokens", "batch_pairs", "preset"}
    assert read_recipe(batch_tokens=512, batch_pairs=64)[0].batch_pairs == 64
    assert read_recipe() == (TrainConfig(), frozenset())


def test_a_resumed_run_refuses_a_changed_setting_from_python_too(tmp_path):
    recorded = TrainConfig(data=("pairs.tsv",), out=str(tmp_path), steps=30, model=PRESETS["tiny"])
    save_run_config(tmp_path, recorded)
    assert run_config(tmp_path) == recorded
    with pytest.raises(EmsearchError, match="records a different steps"):
        checked(replace(recorded, steps=40), resume=True)  # given: what differs from the defaults
    with pytest.raises(EmsearchError, match="records a different lr"):
        checked(replace(recorded, lr=0.5), resume=True, given={"lr"})
    # A field not given is the record's; the shape is set from the data, so it is never compared.
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        checked(replace(recorded, lr=0.5, model=None), resume=True, given={"steps"})
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    assert checked(replace(recorded, model=None), resume=True) == recorded
    with pytest.raises(FileExistsError, match="already holds a run"):
        checked(recorded, resume=False)


def test_a_run_without_data_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(EmsearchError, match="no training data"):
        checked(TrainConfig(out=str(tmp_path / "run")), resume=False)
    assert not Path(tmp_path / "run").exists()
