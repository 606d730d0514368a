"""User-facing errors: one line that names the file and the problem."""


class MattingDeployError(Exception):
    """Bad input or a failed check; the CLI prints it as one line and exits with code 2."""


class GateFailed(MattingDeployError):
    """A drift or parity gate did not hold (CLI exit code 1)."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's text (its type name if it has none), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
