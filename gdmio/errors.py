"""Errors that name a problem with the user's input."""


class InputError(ValueError):
    """Bad input from the user: the message is one line that names the problem.

    The command line prints it and exits with status 2; the services record it as the
    job's failure reason. Never raise it for a bug in our own code.
    """
