"""Errors caused by what the user gave (a file, a key, a value): the CLI prints them without a traceback."""


class UserInputError(ValueError):
    """Bad input. The message names the file, key or value, what was expected and what was found."""


class CheckpointError(UserInputError):
    """A checkpoint or saved model that is missing, incomplete or does not fit the model it is loaded into."""
