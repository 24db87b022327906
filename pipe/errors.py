"""The one exception type for problems the user can fix."""


class PipeError(Exception):
    """A user-facing failure: its message is the single line the pipe prints after ✖.

    `exit_code` lets a run propagate its container's status; everything else exits 1.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
