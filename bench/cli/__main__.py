"""``python -m bench.cli``: the ``bench`` command, as ``torchrun -m bench.cli run ...`` starts it."""

if __name__ == "__main__":
    from bench.cli import console_main

    console_main()
