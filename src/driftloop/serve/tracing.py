"""Who a request is, across services: `X-Request-ID`, W3C `traceparent`, and one JSON access-log line.

A client (or the proxy in front) that already names its requests sends `X-Request-ID`; driftloop then uses
that id everywhere its own would go: the answer, the prediction and error logs, feedback joins, `explain`.
An id that is not 1 to 200 visible ASCII characters is the client's mistake (400 naming the header), because
a silently replaced id would make its feedback join nothing.

`traceparent` (https://www.w3.org/TR/trace-context/) is joined, not replaced: the answer carries the caller's
trace id with a span id of this server, and the access log names the trace. An invalid one is ignored and a
new trace starts, as the recommendation requires of a participant. There is no tracing exporter: the ids are
for correlating logs, which is what a load balancer, a mesh or a log pipeline needs from a model server.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from dataclasses import dataclass

import orjson

from driftloop.serve.validation import RequestRejected

__all__ = ["AccessLog", "RequestContext", "request_context"]

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID = 200
_VISIBLE_ASCII = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID}}}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


class BadRequestId(RequestRejected):
    """The X-Request-ID header is not an id driftloop can log and join on: a 400 naming the header."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message, [{"loc": "header.X-Request-ID", "msg": message}])


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    trace_id: str
    span_id: str
    """This server's span: the parent of whatever the caller does with the answer."""
    sampled: str = "00"

    def headers(self, model_version: str | None = None) -> list[tuple[bytes, bytes]]:
        """Answer headers: the request id, the trace continued with our span, the model version if one answered."""
        out = [
            (b"x-request-id", self.request_id.encode("ascii")),
            (b"traceparent", f"00-{self.trace_id}-{self.span_id}-{self.sampled}".encode("ascii")),
        ]
        if model_version:
            out.append((b"x-model-version", model_version.encode("ascii", "replace")))
        return out


def request_context(request_id: str | None, traceparent: str | None) -> RequestContext:
    """The request's identity from its headers (raw header values, or None when absent)."""
    if request_id is None:
        rid = secrets.token_hex(16)
    elif _VISIBLE_ASCII.fullmatch(request_id):
        rid = request_id
    else:
        raise BadRequestId(
            f"header {REQUEST_ID_HEADER} must be 1 to {MAX_REQUEST_ID} visible ASCII characters (no spaces), "
            f"got {len(request_id)} characters"
        )
    trace_id, sampled = _parent(traceparent)
    return RequestContext(rid, trace_id or secrets.token_hex(16), secrets.token_hex(8), sampled)


def _parent(value: str | None) -> tuple[str | None, str]:
    """(trace id, flags) of a valid traceparent; (None, "00") for a missing or invalid one."""
    if not value:
        return None, "00"
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None, "00"
    version, trace_id, parent_id, flags, rest = m.groups()
    # Version ff is forbidden; version 00 has no trailing fields; all-zero ids are invalid.
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None, "00"
    return trace_id, flags


class AccessLog:
    """One JSON object per answered request on stderr (logger `driftloop.access`, its own handler).

    Its own handler because a log pipeline parses these lines: they must not carry the human log format's
    time and level prefix. Off with `serving.access_log: false`.
    """

    def __init__(self, enabled: bool) -> None:
        self.logger = logging.getLogger("driftloop.access")
        self.enabled = enabled
        if enabled:
            if not any(getattr(h, "driftloop_access", False) for h in self.logger.handlers):
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(message)s"))
                handler.driftloop_access = True  # type: ignore[attr-defined]  # one per process, not per app
                self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)
            self.logger.propagate = False

    def write(
        self,
        ctx: RequestContext | None,
        method: str,
        path: str,
        status: int,
        seconds: float,
        *,
        model_version: str | None = None,
        arm: str | None = None,
        rows: int | None = None,
    ) -> None:
        if not self.enabled:
            return
        line = {
            "ts": time.time(),
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(seconds * 1000.0, 3),
            "request_id": None if ctx is None else ctx.request_id,
            "trace_id": None if ctx is None else ctx.trace_id,
            "model_version": model_version,
            "arm": arm,
            "rows": rows,
        }
        self.logger.info(orjson.dumps(line).decode())
