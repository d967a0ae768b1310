"""The operator's log output: one JSON object (or text line) per record on stderr, with the
secret values the operator has seen masked."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from jupyternetes.engine import masking


class JsonFormatter(logging.Formatter):
    """One JSON object per line: machine-readable, and `instance` is a field to filter on."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        instance = getattr(record, "instance", None)
        if instance:
            doc["instance"] = instance
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted (and masked) by masking.MaskingFilter
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime  # type: ignore[assignment]
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    # Secret values the reconciler has seen are masked in every record, whatever logger or
    # level wrote it (the client library's debug output included).
    masking.install(handler, masking.OPERATOR_LOG_MASK)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The client logs every request at DEBUG; keep it out unless asked for explicitly.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
