"""The ``s3://`` target (boto3): create-only puts, resumable multipart with checksums, HEAD verification.

- Every write is conditional (``If-None-Match: *`` on PutObject and on
  CompleteMultipartUpload), so a retry, a second appliance or ``--force`` can never
  overwrite an object; a 412 means "already there" and the object is then checked.
- Every object carries its SHA-256: as ``x-amz-checksum-sha256`` (the store checks the
  bytes on arrival; per part for multipart) and as ``x-amz-meta-sha256``.
- Files of ``multipart_threshold`` bytes or more go up in parts; the upload id is kept
  in the outbox, and a later attempt lists the parts already stored (ListParts) and
  sends only the missing ones. A vanished upload (expired, aborted, or a store that
  lost it) starts again from the first part.
- After the upload a HEAD must show the right size and checksum (SHA-256, full or
  composite, else the MD5 ETag) before the object counts as done.
- botocore's own retries are off: the uploader's backoff decides when to try again.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import ParseResult

from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from cloud_sync.manifest import SetFile
from cloud_sync.targets import (
    ConflictError,
    PartCallback,
    PutResult,
    RefusedError,
    ResumeStore,
    UnreachableError,
    VerifyError,
    register_target,
)

MIB = 1 << 20
DEFAULT_MULTIPART_THRESHOLD = 64 * MIB
DEFAULT_PART_SIZE = 16 * MIB
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PARTS = 10_000
_TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",  # a concurrent conditional write: try again
    }
)
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_CONTENT_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
}


class _ExistsError(Exception):
    """412 on a conditional write: an object is already stored under the key."""


class _NoSuchUploadError(Exception):
    """The multipart upload id is unknown to the store."""


class _NotFoundError(Exception):
    """No object under the key."""


@register_target("s3", example="s3://bucket/prefix")
class S3Target:
    """A bucket and prefix on AWS S3 or any S3-compatible store (``endpoint_url``).

    Credentials: the arguments, else ``PITBOX_S3_ACCESS_KEY_ID`` /
    ``PITBOX_S3_SECRET_ACCESS_KEY`` (and ``PITBOX_S3_REGION``), else boto3's usual
    chain (``AWS_*`` variables, ``~/.aws``, an instance role).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        on_part: PartCallback | None = None,
        client: Any = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if multipart_threshold < part_size:
            raise ValueError("multipart_threshold must be at least part_size")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.on_part = on_part
        self._client = client or make_client(
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    @classmethod
    def from_url(cls, url: str, parts: ParseResult, **options: Any) -> S3Target:
        """``s3://bucket/prefix``; ``options`` are the constructor's keyword arguments."""
        if not parts.netloc:
            raise ValueError(f"{url!r}: s3 URL needs a bucket (s3://bucket/prefix)")
        return cls(parts.netloc, parts.path.strip("/"), **options)

    @staticmethod
    def canonical_url(parts: ParseResult) -> str:
        return f"s3://{parts.netloc}/{parts.path.strip('/')}".rstrip("/")

    # ---- Target --------------------------------------------------------------------
    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def put(
        self, key: str, source: Path, item: SetFile, resume: ResumeStore
    ) -> PutResult:
        if item.size >= self.multipart_threshold:
            return self._put_multipart(key, source, item, resume)
        return self._put_single(key, source, item)

    def list_keys(self) -> list[str]:
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.prefix:
            kwargs["Prefix"] = self.prefix + "/"
        while True:
            page = self._call("list_objects_v2", **kwargs)
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return sorted(keys)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def download(self, key: str, dest: Path) -> None:
        body = self._call("get_object", Bucket=self.bucket, Key=key)["Body"]
        with dest.open("wb") as out:
            for block in body.iter_chunks(MIB):
                out.write(block)

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD (with its checksum), or None if there is none."""
        try:
            head: dict[str, Any] = self._call(
                "head_object", Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except _NotFoundError:
            return None
        return head

    # ---- published pages (reports, statboards) ---------------------------------------
    def put_bytes(
        self,
        key: str,
        body: bytes,
        content_type: str,
        *,
        public: bool = False,
        create_only: bool = True,
    ) -> PutResult:
        """Store ``body`` under ``key`` (checksummed); create-only unless told otherwise.

        ``public`` gives the object the ``public-read`` ACL (anyone can GET it); a
        create-only put that finds an identical object says ALREADY_THERE and one that
        finds a different object raises ConflictError.
        """
        digest = hashlib.sha256(body).digest()
        options: dict[str, Any] = {"IfNoneMatch": "*"} if create_only else {}
        if public:
            options["ACL"] = "public-read"
        try:
            self._call(
                "put_object",
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ChecksumSHA256=_b64(digest),
                Metadata={"sha256": digest.hex()},
                ContentType=content_type,
                **options,
            )
        except _ExistsError:
            head = self.head(key) or {}
            if head.get("Metadata", {}).get("sha256") == digest.hex():
                return PutResult.ALREADY_THERE
            raise ConflictError(
                f"s3://{self.bucket}/{key} exists with other content"
            ) from None
        return PutResult.CREATED

    def presign(self, key: str, expires_in: int) -> str:
        """A GET link to ``key`` that works for ``expires_in`` seconds, for anyone holding it."""
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=int(expires_in),
            )
        )

    def object_url(self, key: str) -> str:
        """The plain (unsigned) HTTP URL of ``key``: readable only if the object is public."""
        endpoint = str(self._client.meta.endpoint_url).rstrip("/")
        return f"{endpoint}/{self.bucket}/{key}"

    # ---- single PUT ------------------------------------------------------------------
    def _put_single(self, key: str, source: Path, item: SetFile) -> PutResult:
        body = source.read_bytes()
        digests = _Digests(source, item)
        digests.seed_full(body)
        if len(body) != item.size or digests.sha256.hex() != item.sha256:
            raise VerifyError(f"{source} changed since it was checked")
        try:
            self._call(
                "put_object",
                Bucket=self.bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                ChecksumSHA256=_b64(digests.sha256),
                Metadata={"sha256": item.sha256},
                ContentType=_content_type(key),
            )
        except _ExistsError:
            return self._existing(key, digests)
        self._verify(key, digests)
        return PutResult.CREATED

    # ---- multipart -------------------------------------------------------------------
    def _put_multipart(
        self, key: str, source: Path, item: SetFile, resume: ResumeStore
    ) -> PutResult:
        digests = _Digests(source, item)
        stored: dict[int, tuple[int, str]] = {}
        saved = resume.get(key)
        if saved is not None:
            upload_id, part_size = saved
            try:
                stored = self._list_parts(key, upload_id)
            except _NoSuchUploadError:
                resume.clear(key)
                saved = None
        if saved is None:
            # An earlier attempt may have completed before its answer was lost.
            if self.head(key) is not None:
                return self._existing(key, digests)
            part_size = self._part_size_for(item.size)
            upload_id = self._call(
                "create_multipart_upload",
                Bucket=self.bucket,
                Key=key,
                ChecksumAlgorithm="SHA256",
                Metadata={"sha256": item.sha256, "pitbox-part-size": str(part_size)},
                ContentType=_content_type(key),
            )["UploadId"]
            resume.save(key, upload_id, part_size)
        parts = self._send_parts(key, source, upload_id, part_size, stored, digests)
        if digests.sha256.hex() != item.sha256:
            raise VerifyError(f"{source} changed since it was checked")
        try:
            self._call(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except _ExistsError:
            self._abort(key, upload_id)
            resume.clear(key)
            return self._existing(key, digests)
        except _NoSuchUploadError:
            resume.clear(key)
            if self.head(key) is None:
                raise UnreachableError(
                    f"{key}: multipart upload vanished before completion; starting again"
                ) from None
            return self._existing(key, digests)
        resume.clear(key)
        self._verify(key, digests)
        return PutResult.CREATED

    def _send_parts(
        self,
        key: str,
        source: Path,
        upload_id: str,
        part_size: int,
        stored: dict[int, tuple[int, str]],
        digests: _Digests,
    ) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        full = hashlib.sha256()
        part_digests: list[tuple[bytes, bytes]] = []
        with source.open("rb") as fh:
            number = 0
            while data := fh.read(part_size):
                number += 1
                full.update(data)
                sha, md5 = hashlib.sha256(data).digest(), hashlib.md5(data).digest()
                part_digests.append((sha, md5))
                have = stored.get(number)
                if have is not None and have == (len(data), md5.hex()):
                    etag = f'"{md5.hex()}"'  # already stored: not sent again
                else:
                    etag = self._call(
                        "upload_part",
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ChecksumSHA256=_b64(sha),
                    )["ETag"]
                    if self.on_part is not None:
                        self.on_part(key, number)
                parts.append(
                    {"PartNumber": number, "ETag": etag, "ChecksumSHA256": _b64(sha)}
                )
        digests.seed_parts(part_size, part_digests, full.digest())
        return parts

    def _list_parts(self, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
        """Parts already stored: number → (size, ETag without quotes)."""
        out: dict[int, tuple[int, str]] = {}
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "UploadId": upload_id,
        }
        while True:
            page = self._call("list_parts", **kwargs)
            for part in page.get("Parts", []):
                out[int(part["PartNumber"])] = (
                    int(part["Size"]),
                    part["ETag"].strip('"'),
                )
            if not page.get("IsTruncated"):
                return out
            kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._call(
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except (_NoSuchUploadError, _NotFoundError):
            pass

    def _part_size_for(self, size: int) -> int:
        """The configured part size, grown (in MiB steps) to stay within 10,000 parts."""
        needed = math.ceil(size / MAX_PARTS / MIB) * MIB
        return max(self.part_size, needed)

    # ---- verification ----------------------------------------------------------------
    def _verify(self, key: str, digests: _Digests) -> None:
        head = self.head(key)
        if head is None:
            raise VerifyError(f"{self.url}/{key}: not found right after the upload")
        problem = _mismatch(head, digests)
        if problem:
            raise VerifyError(f"{self.url}/{key}: {problem}")

    def _existing(self, key: str, digests: _Digests) -> PutResult:
        head = self.head(key)
        if head is None:
            raise UnreachableError(f"{key}: reported as existing, then not found")
        problem = _mismatch(head, digests)
        if problem:
            raise ConflictError(
                f"{self.url}/{key} exists with other content ({problem}); not overwritten"
            )
        return PutResult.ALREADY_THERE

    # ---- calls -----------------------------------------------------------------------
    def _call(self, operation: str, **kwargs: Any) -> Any:
        """A boto3 call with its failures sorted into transient, refused and the rest."""
        what = f"{operation} s3://{kwargs.get('Bucket', self.bucket)}/{kwargs.get('Key', '')}"
        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(
                exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            )
            message = f"{what}: {code or status} {error.get('Message', '')}".strip()
            if code == "PreconditionFailed" or status == 412:
                raise _ExistsError(message) from None
            if code == "NoSuchUpload":
                raise _NoSuchUploadError(message) from None
            if code in _NOT_FOUND:
                raise _NotFoundError(message) from None
            if status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES:
                raise UnreachableError(message) from None
            raise RefusedError(message) from None
        except (BotoConnectionError, HTTPClientError) as exc:
            raise UnreachableError(f"{what}: {exc}") from None
        except NoCredentialsError:
            raise RefusedError(f"{what}: no S3 credentials configured") from None


class _Digests:
    """SHA-256/MD5 of a local file, whole and per part, computed once when needed."""

    def __init__(self, source: Path, item: SetFile) -> None:
        self.source = source
        self.item = item
        self._sha256: bytes | None = None
        self._md5: bytes | None = None
        self._parts: dict[int, list[tuple[bytes, bytes]]] = {}

    def seed_full(self, body: bytes) -> None:
        self._sha256 = hashlib.sha256(body).digest()
        self._md5 = hashlib.md5(body).digest()

    def seed_parts(
        self, part_size: int, parts: list[tuple[bytes, bytes]], sha256: bytes
    ) -> None:
        self._parts[part_size] = parts
        self._sha256 = sha256

    @property
    def sha256(self) -> bytes:
        if self._sha256 is None:
            self._whole()
        assert self._sha256 is not None
        return self._sha256

    @property
    def md5(self) -> bytes:
        if self._md5 is None:
            self._whole()
        assert self._md5 is not None
        return self._md5

    def parts(self, part_size: int) -> list[tuple[bytes, bytes]]:
        if part_size not in self._parts:
            out = []
            with self.source.open("rb") as fh:
                while data := fh.read(part_size):
                    out.append(
                        (hashlib.sha256(data).digest(), hashlib.md5(data).digest())
                    )
            self._parts[part_size] = out
        return self._parts[part_size]

    def _whole(self) -> None:
        sha, md5 = hashlib.sha256(), hashlib.md5()
        with self.source.open("rb") as fh:
            while block := fh.read(MIB):
                sha.update(block)
                md5.update(block)
        self._sha256, self._md5 = sha.digest(), md5.digest()


def _mismatch(head: dict[str, Any], digests: _Digests) -> str | None:
    """Why the stored object is not the local file (None if it is)."""
    item = digests.item
    size = int(head.get("ContentLength", -1))
    if size != item.size:
        return f"{size} bytes stored, {item.size} expected"
    meta = head.get("Metadata") or {}
    if meta.get("sha256") not in (None, item.sha256):
        return "a different sha256 in its metadata"
    etag = str(head.get("ETag", "")).strip('"')
    checksum = head.get("ChecksumSHA256")
    multipart = "-" in etag or (checksum is not None and "-" in checksum)
    part_size = int(meta.get("pitbox-part-size") or 0)
    if checksum:
        value = checksum.split("-")[0]
        if multipart:
            if not part_size:
                return "multipart object without its part size"
            shas = b"".join(sha for sha, _ in digests.parts(part_size))
            expected = _b64(hashlib.sha256(shas).digest())
        else:
            expected = _b64(digests.sha256)
        return None if value == expected else "its SHA-256 checksum differs"
    head_md5 = etag.partition("-")[0]
    if len(head_md5) == 32 and all(c in "0123456789abcdef" for c in head_md5):
        if multipart:
            if not part_size:
                return "multipart object without its part size"
            md5s = b"".join(md5 for _, md5 in digests.parts(part_size))
            expected = (
                f"{hashlib.md5(md5s).hexdigest()}-{len(digests.parts(part_size))}"
            )
            return None if etag == expected else "its multipart ETag differs"
        return None if etag == digests.md5.hex() else "its MD5 ETag differs"
    return "the store returned neither a SHA-256 checksum nor an MD5 ETag to verify"


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
) -> Any:
    """A boto3 S3 client with SigV4, explicit timeouts and botocore's retries off."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=access_key_id or os.environ.get("PITBOX_S3_ACCESS_KEY_ID"),
        aws_secret_access_key=secret_access_key
        or os.environ.get("PITBOX_S3_SECRET_ACCESS_KEY"),
        region_name=region or os.environ.get("PITBOX_S3_REGION"),
    )
    options: dict[str, Any] = {
        "region_name": session.region_name or "us-east-1",
        "signature_version": "s3v4",
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        # We send SHA-256 checksums ourselves; no extra CRC the store may not know.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
    return session.client("s3", endpoint_url=endpoint_url, config=Config(**options))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _content_type(key: str) -> str:
    return _CONTENT_TYPES.get(os.path.splitext(key)[1], "application/octet-stream")
