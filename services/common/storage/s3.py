"""Object storage on any S3-compatible server (SeaweedFS, AWS S3, ...) through boto3.

A single ``PutObject`` is atomic on S3: readers see the old object or the new one, never a mix. The
sha256 travels as user metadata (``x-amz-meta-sha256``) of the same object, so data and hash can
never disagree unless someone rewrites the object behind rsir's back — which ``get`` detects.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from services.common.storage.base import (
    BlobInfo,
    BlobNotFound,
    IntegrityError,
    InvalidKey,
    ObjectStore,
    StorageError,
    StorageUnavailable,
    sha256_hex,
    validate_key,
)

_MISSING = {"404", "NoSuchKey", "NotFound"}
# what S3 itself calls retryable beside every 5xx (InternalError, ServiceUnavailable, SlowDown): a
# restarting server answers these until it is whole
_TRANSIENT = {"RequestTimeout"}


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None, region: str | None = None,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0):
        import boto3  # imported here so that a local-only deployment never needs boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                        retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
        self.client = boto3.client("s3", endpoint_url=endpoint_url, aws_access_key_id=access_key,
                                   aws_secret_access_key=secret_key, region_name=region or "us-east-1",
                                   config=config)

    def __repr__(self) -> str:
        return f"S3Store({self._base()!r})"

    def _base(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _object(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, key: str | None, fn: Any, **kwargs: Any) -> Any:
        """Run one boto3 call, turning its errors into storage errors that say where."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ConnectTimeoutError

        where = self._base() if key is None else self.uri(key)
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise BlobNotFound(f"{where}: no such blob") from None
            if code == "NoSuchBucket":
                raise StorageError(f"{where}: bucket {self.bucket!r} does not exist") from None
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in _TRANSIENT or status >= 500:
                raise StorageUnavailable(f"{where}: S3 server busy or not ready ({code or status}): {exc}") from None
            raise StorageError(f"{where}: S3 error {code}: {exc}") from None
        except (ConnectionError, ConnectTimeoutError) as exc:
            raise StorageUnavailable(f"{where}: S3 endpoint unreachable ({exc})") from None
        except BotoCoreError as exc:
            raise StorageError(f"{where}: {exc}") from None

    def put(self, key: str, data: bytes) -> BlobInfo:
        digest = sha256_hex(data)
        self._call(key, self.client.put_object, Key=self._object(key), Body=data, Metadata={"sha256": digest})
        return BlobInfo(key, self.uri(key), digest, len(data))

    def head(self, key: str) -> BlobInfo | None:
        try:
            head = self._call(key, self.client.head_object, Key=self._object(key))
        except BlobNotFound:
            return None
        return BlobInfo(key, self.uri(key), self._recorded(key, head), int(head["ContentLength"]))

    def _recorded(self, key: str, response: dict[str, Any]) -> str:
        digest = response.get("Metadata", {}).get("sha256")
        if not digest:
            raise IntegrityError(f"{self.uri(key)}: no sha256 recorded with the object; it was not written "
                                 "through rsir storage, so it cannot be verified")
        return str(digest)

    def _read(self, key: str) -> tuple[bytes, str]:
        response = self._call(key, self.client.get_object, Key=self._object(key))
        with response["Body"] as body:
            data = body.read()
        return data, self._recorded(key, response)

    def delete(self, key: str) -> None:
        self._call(key, self.client.delete_object, Key=self._object(key))

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self._call(None, self.client.list_objects_v2, Prefix=base + prefix, **token)
            keys += [obj["Key"][len(base):] for obj in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object(key)}"

    def key(self, uri: str) -> str:
        parts = urlsplit(uri)
        base = f"{self.prefix}/" if self.prefix else ""
        path = parts.path.lstrip("/")
        if parts.scheme != "s3" or parts.netloc != self.bucket or not path.startswith(base):
            raise InvalidKey(f"{uri!r} is not in this service's storage ({self._base()}/...)")
        return validate_key(path[len(base):])

    def check(self) -> None:
        self._call(None, self.client.head_bucket)
