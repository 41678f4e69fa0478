"""The local news site the polling benchmarks serve: a handler base and its server process.

``cycle_speed.py`` and ``pipeline_throughput.py`` each render their own site and decide
what a request gets; how a response is written and how the server runs in a process of
its own (so that its threads never compete with the timed run for the GIL) is shared here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that answers with :meth:`send` and logs nothing."""

    def send(self, status: int, body: bytes, kind: str | None, headers: dict[str, str]) -> None:
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def serve_forever(handler: type[BaseHTTPRequestHandler], port_file: Path) -> None:
    """Serve on a free port of 127.0.0.1, written to ``port_file`` once listening."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


@contextmanager
def server_process(script: str, root: Path) -> Iterator[str]:
    """Run ``script --serve ROOT --port-file F`` and yield its base URL until the block ends."""
    port_file = root.parent / "port"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, script, "--serve", str(root), "--port-file", str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the feed server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        process.terminate()
        process.wait(timeout=10)
