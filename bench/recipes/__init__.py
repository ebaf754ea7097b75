"""Recipes: the TOML files beside this module (datasets, losses, pairs, setting ranges) and the code
that reads them — ``resolve`` turns recipes plus command-line values into hashable run settings,
``settings`` says what values a loss setting may take and which part ``bench tune`` searches."""
