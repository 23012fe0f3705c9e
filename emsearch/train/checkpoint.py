"""Training checkpoints: every tensor (model, heads, optimiser slots) in one safetensors file, the rest (step,
batch position, optimiser hyper-parameters and the slots an optimiser keeps as Python numbers) in JSON.

A checkpoint is written to a temporary directory that then replaces the old one as a whole (the old one is moved
aside first), so a new state.safetensors never sits beside an old state.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from emsearch.atomic import swap_dir


def save_checkpoint(path: Path, trainee: nn.Module, opts: list[torch.optim.Optimizer], state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in trainee.state_dict().items()}
    groups, numbers = [], {}  # numbers: slots an optimiser keeps as Python numbers (SparseAdam's step)
    for j, opt in enumerate(opts):
        opt_state = opt.state_dict()
        for idx, slots in opt_state["state"].items():
            for name, value in slots.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"opt{j}.{idx}.{name}"] = value.detach().cpu().contiguous()
                else:
                    numbers[f"opt{j}.{idx}.{name}"] = value
        groups.append(opt_state["param_groups"])
    save_file(tensors, str(tmp / "state.safetensors"))
    meta = {**state, "param_groups": groups, "optimizer_numbers": numbers}
    (tmp / "state.json").write_text(json.dumps(meta, indent=2) + "\n")
    swap_dir(tmp, path)


def load_checkpoint(path: Path, trainee: nn.Module, opts: list[torch.optim.Optimizer]) -> dict:
    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    trainee.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    groups, numbers = meta.pop("param_groups"), meta.pop("optimizer_numbers")
    for j, opt in enumerate(opts):
        slots: dict[int, dict[str, torch.Tensor | float]] = {}
        for key, value in [*tensors.items(), *numbers.items()]:
            if key.startswith(f"opt{j}."):
                _, idx, name = key.split(".", 2)
                slots.setdefault(int(idx), {})[name] = value
        opt.load_state_dict({"state": slots, "param_groups": groups[j]})
    return meta


