"""A real S3 HTTP endpoint on loopback (moto's server) that can be told to fail.

    server = FaultyS3Server(); url = server.start()
    server.fail_for(5.0)        # every request answers 503 SlowDown for 5 s
    server.fail_next(3)         # the next 3 requests answer 503

Faults are injected as a WSGI middleware in front of moto's app: clients see genuine
HTTP 503 answers with S3's XML error body, as from a throttled AWS endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultyS3Server:
    def __init__(self) -> None:
        self.app = DomainDispatcherApplication(create_backend_app)
        self.lock = threading.Lock()
        self.fail_until = 0.0
        self.fail_count = 0
        self.failed = 0
        self.server: BaseWSGIServer | None = None
        self.thread: threading.Thread | None = None

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        with self.lock:
            fail = time.monotonic() < self.fail_until or self.fail_count > 0
            if self.fail_count > 0:
                self.fail_count -= 1
            if fail:
                self.failed += 1
        if fail:
            start_response(
                "503 Slow Down",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(_SLOW_DOWN)))],
            )
            return [_SLOW_DOWN]
        return self.app(environ, start_response)  # type: ignore[no-any-return]

    def start(self) -> str:
        self.server = make_server(
            "127.0.0.1", 0, self, threaded=True, request_handler=MotoRequestHandler
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def fail_for(self, seconds: float) -> None:
        with self.lock:
            self.fail_until = time.monotonic() + seconds

    def fail_next(self, n: int) -> None:
        with self.lock:
            self.fail_count = n

    def heal(self) -> None:
        with self.lock:
            self.fail_until, self.fail_count = 0.0, 0
