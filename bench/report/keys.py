"""What makes runs comparable: a *comparison* (same dataset, pair, training budget, validation split and
teachers) and a *recipe* (a loss with its settings inside one). Ranks, Δ and every test stay inside one
comparison.

``teachers`` is the set of teacher weights a group trained against (``runs.with_teachers``): runs
against different teachers sit in different comparisons and are never paired.
"""

COMPARISON = ["dataset", "pair", "protocol", "strong_view", "val_size", "tuned", "stem", "epochs", "batch_size", "lr",
              "teachers"]
RECIPE = [*COMPARISON, "loss", "recipe_hash"]
