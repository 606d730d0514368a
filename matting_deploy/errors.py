"""User-facing errors: one line that names the file and the problem."""


class MattingDeployError(Exception):
    """Bad input or a failed check; the CLI prints it as one line and exits with code 2."""


class GateFailed(MattingDeployError):
    """A drift or parity gate did not hold (CLI exit code 1)."""
