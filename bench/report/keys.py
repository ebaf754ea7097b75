"""What makes runs comparable: a *comparison* (same dataset, pair and training budget) and a *recipe*
(a loss with its settings inside one). Ranks, Δ and every test stay inside one comparison."""

COMPARISON = ["dataset", "pair", "protocol", "strong_view", "tuned", "stem", "epochs", "batch_size", "lr"]
RECIPE = [*COMPARISON, "loss", "recipe_hash"]
