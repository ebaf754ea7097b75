"""``bench tune``: every loss searched under one budget on the validation split, its best settings kept as a
recipe overlay (``results/<dataset>/tuned.toml``) that ``bench run --tuned`` applies."""
