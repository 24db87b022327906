"""Log records as the pipe prints them: one line each, every secret redacted and every control character escaped,
for the pipe's own records and the libraries' (google-auth puts whole request bodies in its DEBUG records)."""

import logging

from pipe import redact, shown

# Attributes every record has; anything else came in through `extra=` (google-auth puts whole
# request bodies and headers there, the subject token included).
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _scrub(value):
    if isinstance(value, str):
        return shown.line(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Redacts each record after formatting its arguments, for our logs and the libraries', and makes it one
    line: only a DEBUG record's traceback keeps its line breaks. Runs before the formatter adds its colours."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's mismatched format args: logging would print a traceback; keep the text
            message = f"{record.msg} {record.args}"
        trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else record.exc_text
        stack = record.stack_info
        record.exc_info = None  # formatted above; formatters print exc_text instead
        if record.levelno <= logging.DEBUG:
            record.exc_text, record.stack_info = (trace and _multiline(trace)), (stack and _multiline(stack))
        else:
            message = "\n".join(part for part in (message, trace, stack) if part)
            record.exc_text = record.stack_info = None
        record.msg, record.args = shown.line(message), ()
        for key in set(vars(record)) - _STANDARD_ATTRIBUTES:
            setattr(record, key, _scrub(getattr(record, key)))
        return True


def _multiline(text: str) -> str:
    return "\n".join(shown.escape(line) for line in redact.redact(text).split("\n"))


def install() -> None:
    """Attach the filter to every root handler (handler filters also see propagated library records),
    and to logging's last-resort handler, which prints when no handler is configured."""
    for handler in [*logging.getLogger().handlers, logging.lastResort]:
        if handler and not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
