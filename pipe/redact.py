"""One redaction layer for everything the pipe prints: known secrets and anything token-shaped."""

import logging
import re

# JWTs (OIDC, ID and registry tokens: a base64url JSON header always starts `eyJ`) and Google OAuth
# access tokens (ya29.a0…, ya29.c.…, ya29.d.…). ASCII classes: tokens are base64url, nothing wider;
# dots only between segments, so a sentence's full stop after a token stays.
_TOKEN_SHAPES = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|ya29(?:\.[A-Za-z0-9_-]+)+")
REDACTED = "[redacted]"

_secrets: set[str] = set()
# Attributes every record has; anything else came in through `extra=` (google-auth puts whole
# request bodies and headers there, the subject token included).
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def add_secret(value: str | None) -> None:
    if value and len(value) >= 8:  # shorter values would redact ordinary words
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):  # longest first: a secret may contain another
        text = text.replace(secret, REDACTED)
    return _TOKEN_SHAPES.sub(REDACTED, text)


def _scrub(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Redacts each record after formatting its arguments, for our logs and the libraries'."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's mismatched format args: logging would print a traceback; keep the text
            message = f"{record.msg} {record.args}"
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        elif record.exc_text:
            message += "\n" + record.exc_text
        record.msg, record.args = redact(message), ()
        record.exc_info = record.exc_text = None  # already in the message, redacted
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in set(vars(record)) - _STANDARD_ATTRIBUTES:
            setattr(record, key, _scrub(getattr(record, key)))
        return True


def install() -> None:
    """Attach the filter to every root handler (handler filters also see propagated library records),
    and to logging's last-resort handler, which prints when no handler is configured."""
    for handler in [*logging.getLogger().handlers, logging.lastResort]:
        if handler and not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
