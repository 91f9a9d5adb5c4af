"""Errors that a program reports as one clear line (exit code 2), never as a traceback."""


class UserError(Exception):
    """A mistake in what the user gave a program: a missing file, a bad option, corrupt input.

    Programs built with :func:`sltk.utils.cli.program` turn it into one line on stderr,
    ``<program>: error: <message>``, and exit code 2. The message should name the file
    or option and the problem.
    """
