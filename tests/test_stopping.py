"""pipe.stopping: a stop signal raises Stopped once; a removal under way is never cut short, by the first signal or
by the ones after it."""

import signal

import pytest

from pipe import stopping


@pytest.fixture
def installed():
    restore = stopping.install()
    yield
    restore()


@pytest.mark.parametrize("signum", stopping.SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_each_stop_signal_raises_stopped_with_its_number(installed, signum):
    with pytest.raises(stopping.Stopped) as stopped:
        signal.raise_signal(signum)
    assert stopped.value.signum == signum
    assert not isinstance(stopped.value, Exception)  # no `except Exception` on the way up swallows it


def test_a_signal_during_a_removal_waits_until_the_removal_is_done(installed):
    done = []
    with pytest.raises(stopping.Stopped) as stopped:
        with stopping.uninterrupted():
            signal.raise_signal(signal.SIGTERM)
            done.append("removed")  # still runs: the signal waits
    assert done == ["removed"] and stopped.value.signum == signal.SIGTERM


def test_nested_removals_all_finish_before_the_stop(installed):
    done = []
    with pytest.raises(stopping.Stopped):
        with stopping.uninterrupted():
            with stopping.uninterrupted():
                signal.raise_signal(signal.SIGINT)
                done.append("inner")
            done.append("outer")  # the inner removal's end must not raise yet
    assert done == ["inner", "outer"]


def test_signals_after_the_first_do_not_interrupt_its_cleanup(installed):
    done = []
    with pytest.raises(stopping.Stopped):
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:  # the unwinding the first signal started, as container.run's `finally` is
            for _ in range(10):
                signal.raise_signal(signal.SIGTERM)  # a storm of signals 1 ms apart, as a runner may send
            done.append("cleaned up")
    assert done == ["cleaned up"]


def test_a_removal_without_a_signal_raises_nothing(installed):
    with stopping.uninterrupted():
        pass


def test_install_gives_back_the_previous_handlers():
    before = {signum: signal.getsignal(signum) for signum in stopping.SIGNALS}
    restore = stopping.install()
    assert all(signal.getsignal(signum) is not before[signum] for signum in stopping.SIGNALS)
    restore()
    assert {signum: signal.getsignal(signum) for signum in stopping.SIGNALS} == before
