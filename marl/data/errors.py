"""The one error of the data layer (its own module, so every data module can raise it)."""

from envs.core import UserError


class DatasetError(UserError):
    """A dataset file that is missing, unreadable or not what it claims to be: one message
    naming the file, the key and what was expected."""
