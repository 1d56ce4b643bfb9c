"""Log output for ``apishield serve``: one JSON object per line, on standard error.

Audit events are already JSON (see ``pipeline/audit.py``) and are written as they are; every
other record becomes ``{"ts", "level", "logger", "message"}``. Tracebacks of unexpected errors
stay in this log, for the operator, and never reach a client.

When the stream is a real file (standard error of ``apishield serve``), audit events skip the
``logging`` machinery and go through :class:`~apishield.observe.auditlog.AuditLog` to the same
file descriptor, batched per event-loop turn: the same lines, at a fraction of the cost.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import TextIO

from apishield.observe.auditlog import AuditLog, install_audit_log


class JSONLineFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "apishield.audit" and message.startswith("{"):
            return message
        event: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, separators=(",", ":"))


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send apishield's and uvicorn's logs to ``stream`` as JSON lines; returns the handler.

    Audit events (level INFO) go to the same stream through a direct :class:`AuditLog` when
    the stream has a file descriptor and INFO is enabled; otherwise through this handler.
    """
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONLineFormatter())
    for name in ("apishield", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    fd = _fileno(stream)
    if fd is not None and logging.getLogger("apishield.audit").isEnabledFor(logging.INFO):
        stream.flush()  # what the stream buffered goes first, in order
        install_audit_log(AuditLog(fd))
    else:
        install_audit_log(None)
    return handler


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
