"""One redaction layer for everything the pipe prints: known secrets and anything token-shaped."""

import logging
import re

# JWTs (OIDC, ID and registry tokens) and Google OAuth access tokens.
_TOKEN_SHAPES = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*|ya29\.[\w.-]+")
REDACTED = "[redacted]"

_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    if value and len(value) >= 8:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _TOKEN_SHAPES.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Redacts each record after formatting its arguments, for our logs and the libraries'."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.msg, record.args = redact(message), ()
        return True


def install() -> None:
    """Attach the filter to every root handler (handler filters also see propagated library records)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
