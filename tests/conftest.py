"""Shared test fixtures: where the real datasets are, and a local HTTP server with failure modes."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _candidates(var: str, shared: str) -> list[Path]:
    """Folders from the environment variable `var` (':'-list), then `../shared/<shared>`."""
    env = [Path(p).expanduser() for p in os.environ.get(var, "").split(os.pathsep) if p.strip()]
    return [*env, REPO.parent / "shared" / shared]


def find_datasets() -> Path | None:
    """A folder holding the real Set5 and Set14: SRBENCH_DATA_PATH, `../shared/datasets`, or the cache."""
    from bench.data import cache_dir

    for path in [*_candidates("SRBENCH_DATA_PATH", "datasets"), cache_dir()]:
        if (path / "Set5").is_dir() and (path / "Set14").is_dir():
            return path
    return None


def find_weights() -> Path | None:
    """A folder laid out as shared/weights (`<model>/<file>`): SRBENCH_WEIGHTS_PATH, then `../shared/weights`."""
    for path in _candidates("SRBENCH_WEIGHTS_PATH", "weights"):
        if (path / "pan").is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real HR images (the fidelity tests' one fixture); the test skips without them."""
    path = find_datasets()
    if path is None:
        pytest.skip(
            "real datasets not found: set SRBENCH_DATA_PATH or run 'python -m bench fetch set5 set14'"
        )
    return path


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """The official zoo checkpoints; the test skips without them."""
    path = find_weights()
    if path is None:
        pytest.skip(
            "official weights not found: set SRBENCH_WEIGHTS_PATH (a folder laid out as shared/weights)"
        )
    return path


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 (random port) serving `root`.

    `mode` picks how it answers: "ok" (serve files, 404 when absent), "404", "500", "stall"
    (send the headers and half of the body, then hang until the server stops) or "drop" (send the
    headers and half of the body, then close the connection). Every request path is appended to
    `requests`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.mode = "ok"
        self.requests: list[str] = []
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                if server.mode in ("404", "500"):
                    self.send_error(int(server.mode))
                    return
                path = (server.root / self.path.split("?")[0].lstrip("/")).resolve()
                if not path.is_file() or server.root.resolve() not in path.parents:
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.mode in ("stall", "drop"):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    if server.mode == "stall":
                        server._stop.wait(30)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_HEAD = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # release stalled handlers
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def local_http_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A LocalServer serving `tmp_path / "www"` (created empty); put files there before requesting them."""
    root = tmp_path / "www"
    root.mkdir()
    server = LocalServer(root).start()
    try:
        yield server
    finally:
        server.stop()
