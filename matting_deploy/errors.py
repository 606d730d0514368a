"""User-facing errors: one line that names the file and the problem."""

EXIT_BAD_INPUT = 2  # bad input or a failed check (MattingDeployError)
EXIT_GATE = 1  # a drift or parity gate did not hold (GateFailed)
EXIT_BUG = 70  # an unexpected exception: a bug in matting-deploy (EX_SOFTWARE)


class MattingDeployError(Exception):
    """Bad input or a failed check; the CLI prints it as one line and exits with code 2."""


class GateFailed(MattingDeployError):
    """A drift or parity gate did not hold (CLI exit code 1)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like SIGINT's KeyboardInterrupt so every ``finally`` cleans up."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's text (its type name if it has none), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
