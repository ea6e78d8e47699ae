"""The local AWS emulator: the pinned moto server from ``.venv`` on a loopback port."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import IO

import boto3
from botocore.config import Config

from .processes import Supervisor

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
_CLIENT_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Emulator:
    """A running moto server and the environment that points AWS clients at it."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    @classmethod
    def start(cls, supervisor: Supervisor, moto_server: Path, log: IO[bytes]) -> "Emulator":
        if not moto_server.is_file():
            raise SystemExit(
                f"moto_server not found at {moto_server}: run `make venv` to install the pinned "
                "emulator into .venv."
            )
        port = free_port()
        supervisor.start("moto", [str(moto_server), "-H", "127.0.0.1", "-p", str(port)], log=log)
        emulator = cls(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return emulator
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the moto emulator did not come up on port {port} within 60 s")
                time.sleep(0.1)

    def child_env(self) -> dict[str, str]:
        """Standard AWS variables for a child process (a geobatch binary)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str):
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=_CLIENT_CONFIG,
        )


def base_env() -> dict[str, str]:
    """This process's environment without AWS settings that could leak a real account in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
