"""Training an EMS encoder, from a recipe to a model bundle: `read_recipe` (recipe.py), `cache_teacher` for a
recipe's teacher stages (prepare.py), then `train` (loop.py over trainee.py, data.py, losses.py, token_table.py,
mono.py, checkpoint.py). Training stands below search and the index: it imports neither.

    from emsearch.train import read_recipe, train
    cfg, given = read_recipe("training/default.json", out="runs/try")
    bundle = train(cfg, given=given)
"""

from emsearch.lazy import lazy_exports

__all__ = ["cache_teacher", "read_recipe", "run_config", "train"]
__getattr__ = lazy_exports(__name__, {
    "cache_teacher": "emsearch.train.prepare",
    "read_recipe": "emsearch.train.recipe",
    "run_config": "emsearch.train.recipe",
    "train": "emsearch.train.loop",
})
