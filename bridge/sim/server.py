"""Run an ASGI app on a real loopback HTTP server in a background thread.

The simulators are real HTTP servers so that the real client libraries (pysnow, jira) talk to
them exactly as they would to a vendor instance. uvicorn with httptools and uvloop keeps the
server far faster than any client under test.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

START_TIMEOUT = 10.0
STOP_TIMEOUT = 3.0


@dataclass
class RunningServer:
    """A started server: where it listens and how to stop it."""

    host: str
    port: int
    server: uvicorn.Server = field(repr=False)
    thread: threading.Thread = field(repr=False)
    sock: socket.socket = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request_stop(self) -> None:
        """Ask the server to shut down without waiting (stop several servers in parallel)."""
        self.server.should_exit = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop accepting, close keep-alive connections and join the thread."""
        self.request_stop()
        self.thread.join(timeout)
        if self.thread.is_alive():  # a request still hangs on: stop waiting for it
            self.server.force_exit = True
            self.thread.join(timeout)
        self.sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so port 0 gives the real port before start-up."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve `app` on `host:port` (0 = any free port); return once it accepts connections.

    Raises OSError when the port is taken and RuntimeError if the server fails to start.
    """
    sock = _bind(host, port)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"sim-http-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"simulator server on {host}:{port} failed to start")
        time.sleep(0.005)
    return RunningServer(host=host, port=sock.getsockname()[1], server=server, thread=thread,
                         sock=sock)
