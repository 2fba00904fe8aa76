"""Serving the nightly flow on its schedule against a real Prefect server (Prefect will not
schedule on its ephemeral API)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

from prefect import serve
from prefect.schedules import Cron

from flows.nightly import nightly
from loyalty_engine.config import Settings

DEPLOYMENT = "nightly"


def nightly_deployment(settings: Settings):
    """The deployment `serve` registers: the configured cron in the configured time zone."""
    return nightly.to_deployment(
        name=DEPLOYMENT,
        schedules=[Cron(settings.schedule.cron, timezone=settings.schedule.timezone)],
        parameters={"config_path": str(settings.source.resolve())},
        description="Load the night's extracts, evaluate the warning rules, mail the digests.",
    )


def serve_nightly(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Serve until stopped; start a local Prefect server first when PREFECT_API_URL names none."""
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server, url = start_local_server(Path(os.environ["PREFECT_HOME"]), say)
        os.environ["PREFECT_API_URL"] = url
    try:
        say(f"Serving '{DEPLOYMENT}' on '{settings.schedule.cron}' ({settings.schedule.timezone}) against {os.environ['PREFECT_API_URL']}")
        serve(nightly_deployment(settings), print_starting_message=False)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def start_local_server(home: Path, say: Callable[[str], None], timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """`prefect server start` on a free loopback port, its SQLite database under `home`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "ab")
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    say(f"Starting a local Prefect server on {url} (log: {home / 'server.log'}) …")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {server.returncode}; see {home / 'server.log'}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(1)
    server.terminate()
    raise RuntimeError(f"prefect server did not answer within {timeout:.0f} s; see {home / 'server.log'}")
