"""A local stand-in for EC2 instance metadata (IMDSv2), one per worker instance.

Moto emulates neither instance metadata nor Spot, so the local stack serves the part the
worker's Spot interruption watcher reads: ``PUT /latest/api/token`` (a session token,
required on every ``GET``), ``GET /latest/meta-data/spot/instance-action`` and
``GET /latest/meta-data/events/recommendations/rebalance`` (``404`` until a notice is
announced). One server answers for every instance under ``/<instance id>/``, so each
worker task is given ``GEOBATCH_IMDS_ENDPOINT=http://127.0.0.1:PORT/<instance id>``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .emulator import free_port

TOKEN_PATH = "/latest/api/token"
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class ImdsStandIn:
    """Instance metadata for every local instance; notices are announced per instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: set[str] = set()
        self._instance_action: dict[str, str] = {}
        self._rebalance: dict[str, str] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="imds", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def endpoint(self, instance_id: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{instance_id}"

    def interrupt(self, instance_id: str, notice_secs: float = 120.0) -> float:
        """Announces a Spot interruption of `instance_id` in `notice_secs`; returns when the
        notice became visible (epoch seconds)."""
        now = time.time()
        body = json.dumps({"action": "terminate", "time": rfc3339(now + notice_secs)})
        with self._lock:
            self._instance_action[instance_id] = body
        return now

    def recommend_rebalance(self, instance_id: str) -> float:
        now = time.time()
        with self._lock:
            self._rebalance[instance_id] = json.dumps({"noticeTime": rfc3339(now)})
        return now

    def _answer(self, method: str, path: str, headers: Any) -> tuple[int, bytes]:
        instance_id, _, rest = path.lstrip("/").partition("/")
        rest = "/" + rest
        if method == "PUT" and rest == TOKEN_PATH:
            ttl = headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return 400, b""
            token = secrets.token_urlsafe(24)
            with self._lock:
                self._tokens.add(token)
            return 200, token.encode()
        if method != "GET" or rest not in (INSTANCE_ACTION_PATH, REBALANCE_PATH):
            return 404, b""
        with self._lock:
            if headers.get("X-aws-ec2-metadata-token") not in self._tokens:
                return 401, b""
            notices = self._instance_action if rest == INSTANCE_ACTION_PATH else self._rebalance
            body = notices.get(instance_id)
        return (200, body.encode()) if body is not None else (404, b"")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                status, body = imds._answer(self.command, self.path, self.headers)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker gave up waiting or was killed: nothing to answer

            do_GET = _reply  # noqa: N815 - http.server's naming
            do_PUT = _reply  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler


# The worker's log lines for a message it hands back: a fresh copy sent in its place (how a
# release is made while the hop limit allows), or a visibility-0 release past that limit.
RELEASE_MESSAGES = ("message handed back to the queue as a fresh copy", "message released to the queue")


def interruption_releases(log_dir: Path, task_ids: list[str]) -> list[tuple[float, str]]:
    """(epoch seconds, message id) of every release ahead of an interruption in these tasks'
    logs (the worker's JSON lines)."""
    releases = []
    for task_id in task_ids:
        path = log_dir / f"task-{task_id}.log"
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            fields = record.get("fields", record)
            if fields.get("message") in RELEASE_MESSAGES and fields.get("reason") == "interruption":
                # Python reads at most microseconds; tracing may write nanoseconds.
                stamp = re.sub(r"(\.\d{6})\d*", r"\1", record["timestamp"]).replace("Z", "+00:00")
                at = datetime.fromisoformat(stamp).timestamp()
                releases.append((at, str(fields.get("message_id"))))
    return sorted(releases)
