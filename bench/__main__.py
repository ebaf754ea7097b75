"""``python -m bench``: the ``bench`` command (also ``torchrun ... -m bench run``)."""

if __name__ == "__main__":
    from bench.cli import console_main

    console_main()
