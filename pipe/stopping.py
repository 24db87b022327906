"""Stopping on a signal. SIGTERM, SIGINT, SIGHUP and SIGQUIT (what a runner or a user sends) raise Stopped once,
which unwinds through every `finally`, so run containers and credential files are removed. A signal that arrives
while the pipe is removing something waits until that removal is done, and later signals do not interrupt the
cleanup the first one started. (SIGKILL cannot be caught: what it leaves, the next run removes.)"""

import signal
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


class Stopped(BaseException):
    """A stop signal: not an Exception, so no `except Exception` swallows it on its way up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _State:
    cleaning = 0  # removals under way (nested)
    pending: int | None = None  # a signal that arrived during one
    stopped = False  # Stopped raised already: its cleanup runs to the end


def _on_signal(signum, frame):
    if _State.stopped:
        return
    if _State.cleaning:
        _State.pending = _State.pending or signum
        return
    _State.stopped = True
    raise Stopped(signum)


def install():
    """Handle the stop signals; returns a function that puts the previous handlers back."""
    _State.cleaning, _State.pending, _State.stopped = 0, None, False
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


@contextmanager
def uninterrupted():
    """Around a removal, or a step whose result a removal needs (the id of a container being created): a stop signal
    waits until it is done, then stops the pipe."""
    _State.cleaning += 1
    try:
        yield
    finally:
        _State.cleaning -= 1
        if not _State.cleaning and _State.pending and not _State.stopped:
            signum, _State.pending, _State.stopped = _State.pending, None, True
            raise Stopped(signum)
