"""How counts read in what the user sees: "1 epoch", "2 epochs", never "1 epochs" or "run(s)"."""


def plural(count: int, one: str, many: str | None = None) -> str:
    """``count`` and the noun that agrees with it (``many`` defaults to ``one`` + "s")."""
    return f"{count} {one if count == 1 else many or one + 's'}"
