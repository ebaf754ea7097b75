"""What makes runs comparable: a *comparison* (same dataset, pair, training budget and validation split) and a *recipe*
(a loss with its settings inside one). Ranks, Δ and every test stay inside one comparison."""

COMPARISON = ["dataset", "pair", "protocol", "strong_view", "val_size", "tuned", "stem", "epochs", "batch_size", "lr"]
RECIPE = [*COMPARISON, "loss", "recipe_hash"]
