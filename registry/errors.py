"""Errors that mean "the user asked for something that does not exist or is invalid".

The CLI turns every ``ConfigError`` into one line on stderr and exit code 2, so anything raised
with this type must already read as a complete sentence naming the valid choices.
"""


class ConfigError(ValueError):
    """Bad user input: unknown name, missing data, invalid number or option."""


class UnknownNameError(ConfigError, LookupError):
    """A name that no registry entry answers to."""

    def __init__(self, kind: str, name: str, choices):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(f"unknown {kind} '{name}'; expected one of: {', '.join(self.choices)}")
