"""Small kafka-python helpers shared by the producer, the bronze sink and the stack's health check."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from weatherpipe.errors import ServiceUnavailable
from weatherpipe.settings import KafkaSettings

log = logging.getLogger(__name__)


def unreachable(kafka: KafkaSettings, exc: BaseException) -> ServiceUnavailable:
    """The error every Kafka client of the pipeline raises when the broker cannot be reached."""
    return ServiceUnavailable(
        f"Kafka is not reachable at {kafka.bootstrap_servers} ({type(exc).__name__})",
        hint="start it (`weatherpipe stack up`) or set WEATHERPIPE_KAFKA__BOOTSTRAP_SERVERS",
    )


def admin(kafka: KafkaSettings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id="weatherpipe-admin",
            request_timeout_ms=kafka.request_timeout_ms,
            bootstrap_timeout_ms=kafka.request_timeout_ms,
        )
    except (KafkaError, OSError) as exc:
        raise unreachable(kafka, exc) from None


def metadata_ok(bootstrap_servers: str) -> bool:
    try:
        client = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=3000,
            bootstrap_timeout_ms=3000,
            client_id="weatherpipe-health",
        )
    except (KafkaError, OSError):
        return False
    try:
        client.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        client.close()


def ensure_topic(kafka: KafkaSettings, topic: str | None = None) -> None:
    """Create the topic with the configured partitions/replication if it does not exist."""
    name = topic or kafka.topic
    client = admin(kafka)
    try:
        if name in client.list_topics():
            return
        client.create_topics(
            [NewTopic(name, num_partitions=kafka.partitions, replication_factor=kafka.replication_factor)]
        )
        log.info("created topic", extra={"topic": name, "partitions": kafka.partitions})
    except TopicAlreadyExistsError:
        pass
    except KafkaError as exc:
        raise ServiceUnavailable(f"cannot create topic {name!r}: {type(exc).__name__}") from None
    finally:
        client.close()
