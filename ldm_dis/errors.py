"""Errors caused by what the user gave (a file, a key, a value): the CLI prints them without a traceback."""


class UserInputError(ValueError):
    """Bad input. The message names the file, key or value, what was expected and what was found."""
