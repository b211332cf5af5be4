"""Logging set-up for the CLI: text or JSON lines on stderr, with secrets scrubbed as a last defence.

Secrets are kept out of log calls by construction (``Secret``, redacted reprs); the filter here
catches what slips through anyway (a PEM block in an exception text, a signature header echoed by a
library at DEBUG level).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_SCRUB = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
     "<redacted private key>"),
    (re.compile(r"(?i)(KALSHI-ACCESS-SIGNATURE['\"]?\s*[:=,]\s*['\"]?)[A-Za-z0-9+/=]{16,}"), r"\1<redacted>"),
    (re.compile(r"(?i)(\"(?:pass|auth_token|sig|nkey_seed)\"\s*:\s*\")[^\"]*"), r"\1<redacted>"),
    (re.compile(r"(?i)(nats|tls)://[^/@\s:]+:[^/@\s]+@"), r"\1://<redacted>@"),
    (re.compile(r"SU[A-Z2-7]{56}"), "<redacted nkey seed>"),
]


def plural(n: int, noun: str, nouns: str | None = None, *, grouped: bool = True) -> str:
    """``1 message``, ``2 messages``, ``1,000 messages`` (``1000 messages`` without ``grouped``)."""
    count = f"{n:,}" if grouped else str(n)
    return f"{count} {noun if n == 1 else nouns or noun + 's'}"


def scrub(text: str) -> str:
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


class ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            doc["exc"] = record.exc_text
        elif record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ScrubFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # picows logs every frame at DEBUG: keep it at INFO unless asked for explicitly
    if level.lower() == "debug":
        logging.getLogger("picows").setLevel(logging.INFO)


class Throttle:
    """At most one line per ``interval`` for a message that can repeat fast (a publisher that goes in
    and out of its spill at every burst logged 1,534 lines in 7 s); the next line says how many were
    held back. The events and counters still record each one."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, clock=time.monotonic):
        self.logger, self.interval, self.clock = logger, interval, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, msg: str, *args) -> bool:
        """Log unless ``msg`` (the format, not its arguments) was logged less than ``interval`` ago; True
        when it was logged (a caller may tell the same once more elsewhere, at the same pace)."""
        now = self.clock()
        last = self._last.get(msg)
        if last is not None and now - last < self.interval:
            self._held[msg] = self._held.get(msg, 0) + 1
            return False
        self._last[msg] = now
        held = self._held.pop(msg, 0)
        if held:
            msg += f" ({held} more in the last {now - last:.0f} s)"
        self.logger.log(level, msg, *args)
        return True
