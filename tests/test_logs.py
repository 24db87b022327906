"""pipe.logs: every log record, ours and the libraries' (DEBUG included), is one line with every secret redacted and
every control character escaped; only a DEBUG traceback spans lines."""

import io
import logging

import colorlog
import pytest

from pipe import logs, redact
from pipe.main import main
from tests.support.emulator.tokens import new_access_token
from tests.support.figures import probe
from tests.support.token_shapes import FORGED, ORDINARY, STEP_TOKEN, TOKENS

ACCESS_TOKEN = new_access_token("ya29.c.")


@pytest.fixture
def output(monkeypatch):
    """A root handler as the toolkit installs one, with the filter from logs.install(); root at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # setLevel, not an attribute: it clears the loggers' isEnabledFor caches
    monkeypatch.setattr(logging.getLogger("google"), "propagate", True)  # google-auth turns it off when unconfigured
    logs.install()
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_records_with_arguments_are_redacted(output):
    logging.getLogger("pipe").info("exchanging %s for %s at %s", STEP_TOKEN, TOKENS[3], ORDINARY[0])
    text = output.getvalue()
    assert STEP_TOKEN not in text and TOKENS[3] not in text
    assert f"exchanging {redact.REDACTED} for {redact.REDACTED} at {ORDINARY[0]}" in text


def test_exception_text_is_redacted(output):
    try:
        raise ValueError(f"refused {STEP_TOKEN}")
    except ValueError:
        logging.getLogger("pipe").exception("exchange failed with %s", TOKENS[4])
    text = output.getvalue()
    assert "Traceback" in text and "ValueError: refused [redacted]" in text
    assert STEP_TOKEN not in text and TOKENS[4] not in text


@pytest.mark.parametrize("library", ["urllib3.connectionpool", "google.auth.transport.requests", "docker.api.client"])
def test_child_library_loggers_at_debug_are_redacted(output, library):
    token = TOKENS[5]
    logging.getLogger(library).debug('%s://%s:%s "%s /v1/x?access_token=%s HTTP/1.1" 200', "https", "h", 443, "POST", token)
    text = output.getvalue()
    assert f"DEBUG {library}:" in text and "access_token=[redacted]" in text and token not in text


def test_structured_extras_are_redacted(output):
    """google-auth's request log carries the body (subject token unhashed) and headers in `extra`."""
    captured = []
    probe = logging.Handler()
    probe.emit = captured.append
    logging.getLogger().addHandler(probe)
    logs.install()
    try:
        logging.getLogger("google.auth.transport.requests").debug(
            "Making request...",
            extra={"httpRequest": {"body": {"subject_token": STEP_TOKEN}, "headers": {"Authorization": f"Bearer {TOKENS[6]}"}}},
        )
    finally:
        logging.getLogger().removeHandler(probe)
    request = captured[0].httpRequest
    assert request == {"body": {"subject_token": redact.REDACTED}, "headers": {"Authorization": f"Bearer {redact.REDACTED}"}}


def test_a_library_record_with_bad_arguments_does_not_raise(output):
    logging.getLogger("urllib3").debug("%s and %s", TOKENS[3])  # one argument short
    assert "[redacted]" in output.getvalue() and TOKENS[3] not in output.getvalue()


def test_install_twice_adds_one_filter_per_handler(output):
    logs.install()
    logs.install()
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, logs.RedactingFilter) for f in handler.filters) == 1


def test_error_lines_are_redacted(capsys):
    """A token pasted into a variable never reaches the ✖ line."""
    provider = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
    assert main({"WORKLOAD_IDENTITY_PROVIDER": provider, "IMAGE": STEP_TOKEN}) == 1
    out, err = capsys.readouterr()
    assert "✖ IMAGE is" in out
    assert STEP_TOKEN not in out + err


@pytest.fixture
def colored():
    """The toolkit's handler (colorlog, as bitbucket_pipes_toolkit.helpers.configure_logger sets it up), filtered."""
    stream = io.StringIO()
    handler = colorlog.StreamHandler(stream)
    handler.setFormatter(colorlog.ColoredFormatter("%(log_color)s%(levelname)s: %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logs.install()
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_log_record_is_one_line_and_keeps_the_pipes_colours(colored):
    with probe("forged log line from an input"):
        logging.getLogger("pipe").info("Audience: %s", FORGED)
        logging.getLogger("pipe").warning(f"Image {FORGED} runs as root")
        lines = colored.getvalue().splitlines()
        assert len(lines) == 2 and all(line.startswith("\x1b[") and line.endswith("\x1b[0m") for line in lines)
        assert all(line.count("\x1b") == 2 and "\r" not in line for line in lines)  # the formatter's colour and reset
        assert "INFO: Audience: https://svc.run.app\\n\\x1b[32m✔ The script" in lines[0]


def test_only_a_debug_traceback_spans_lines(colored):
    for level in (logging.DEBUG, logging.ERROR):
        try:
            raise ValueError(f"refused {ACCESS_TOKEN} for {FORGED}")
        except ValueError:
            logging.getLogger("pipe").log(level, "exchange failed", exc_info=True)
    debug, error = colored.getvalue().split("\x1b[31mERROR: ")  # where the red of the ERROR line starts
    assert "exchange failed\x1b[0m\nTraceback (most recent call last):\n  File " in debug  # the trace follows the colours
    assert "\nValueError: refused [redacted] for https://svc.run.app\n\\x1b[32m✔" in debug  # its lines, but no ESC
    assert error.count("\n") == 1 and error.startswith("exchange failed\\nTraceback (most recent call last):\\n  File ")
    assert ACCESS_TOKEN not in debug + error
    assert debug.count("\x1b") == 2 and error.count("\x1b") == 1  # colour and reset; the error's red is the split above
