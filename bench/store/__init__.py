"""What lasts on disk: the results store (``runs.csv`` and each run's config), the tuned overlay
beside it (``tuned.toml``), training checkpoints, the status a finished row carries (collapsed or
not) and the copies of damaged files set aside.

Everything here is written atomically and may be shared by many processes; nothing in it trains."""
