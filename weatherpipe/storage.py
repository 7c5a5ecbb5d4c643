"""The S3-compatible object store (SeaweedFS locally, MinIO in compose): boto3 for objects, pyarrow for Parquet."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from weatherpipe.errors import ConfigError, ServiceUnavailable
from weatherpipe.settings import S3Settings


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


def _explain(exc: Exception, s3: S3Settings) -> Exception:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"}:
            return ConfigError(
                f"the S3 store at {s3.endpoint_url} refused the credentials ({code})",
                hint="check WEATHERPIPE_S3__ACCESS_KEY / WEATHERPIPE_S3__SECRET_KEY",
            )
        message = str(exc.response.get("Error", {}).get("Message", "")).strip()[:200]
        detail = f"{code or 'error'} ({message})" if message else code or "error"
        return ServiceUnavailable(f"S3 request failed at {s3.endpoint_url}: {detail}")
    return ServiceUnavailable(
        f"the S3 store is not reachable at {s3.endpoint_url} ({type(exc).__name__})",
        hint="start it (`weatherpipe stack up`) or set WEATHERPIPE_S3__ENDPOINT_URL",
    )


class ObjectStore:
    def __init__(self, s3: S3Settings, *, attempts: int = 3) -> None:
        self.cfg = s3
        self.bucket = s3.bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            region_name=s3.region,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key.get_secret_value(),
            config=Config(
                retries={"max_attempts": attempts, "mode": "standard"},
                connect_timeout=3,
                read_timeout=30,
                max_pool_connections=32,  # the bronze writer PUTs with 16 threads: keep their connections
                s3={"addressing_style": "path"},
            ),
        )

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except (ClientError, BotoCoreError, EndpointConnectionError) as exc:
            raise _explain(exc, self.cfg) from None

    def ping(self) -> bool:
        try:
            self.client.list_buckets()
            return True
        except (ClientError, BotoCoreError):
            return False

    def ensure_bucket(self, bucket: str | None = None) -> None:
        """Create the lake's bucket (or ``bucket``) unless it exists."""
        bucket = bucket or self.bucket
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError:
            self._call("create_bucket", Bucket=bucket)
        except BotoCoreError as exc:
            raise _explain(exc, self.cfg) from None

    def remove_bucket(self, bucket: str) -> None:
        """Delete every object of ``bucket``, then the bucket (for stores made for a test or a bench)."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            if page.get("Contents"):
                objects = [{"Key": o["Key"]} for o in page["Contents"]]
                self._call("delete_objects", Bucket=bucket, Delete={"Objects": objects})
        self._call("delete_bucket", Bucket=bucket)

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Write (or overwrite) one object; returns its ETag. A single PUT is atomic on S3."""
        out = self._call("put_object", Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return str(out.get("ETag", "")).strip('"')

    def get(self, key: str) -> bytes:
        return self._call("get_object", Bucket=self.bucket, Key=key)["Body"].read()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"], int(item["Size"]), str(item.get("ETag", "")).strip('"'))
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i : i + 1000]]
            self._call("delete_objects", Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})


def arrow_filesystem(s3: S3Settings) -> Any:
    """A ``pyarrow.fs.S3FileSystem`` on the same endpoint (used by Spark's Python data source)."""
    from pyarrow import fs  # noqa: PLC0415 - pyarrow only for Spark's data source and tests

    return fs.S3FileSystem(
        endpoint_override=s3.host_port,
        scheme=s3.scheme,
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        region=s3.region,
        connect_timeout=3,
        request_timeout=30,
    )


def text_or_base64(value: bytes) -> tuple[str, str]:
    """Bytes for a JSON dead-letter line: (text, "utf-8") when they decode, else (base64, "base64")."""
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), "base64"
