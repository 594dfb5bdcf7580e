"""What is loaded: the test objects in the bucket, and the links each peer is read through.

Every peer reads the same objects of one bucket. Links are request targets (path and query),
made before anything is timed, each with its own expiry so that no two carry the same token:
SigV4 presigned for the storage itself (and for the TCP forwarder, which passes them on),
HMAC-SHA256 signed for the gateway, and `secure_link` MD5 for nginx.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from yarl import URL

from benchmarks.gateway_load.measure import KiB, MiB
from signer import Keyring, sign_path
from tests.servers import S3Client, S3Server

BUCKET: Final = "bench"
SMALL_SIZE: Final = 4 * KiB
SMALL_OBJECTS: Final = 64  # distinct 4 KiB objects; links cycle over them
PART_SIZE: Final = 16 * MiB  # multipart upload part: the most held in memory while uploading
LINK_LIFETIME: Final = 3600  # seconds; link i expires i seconds later than link 0


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str

    @property
    def path(self) -> str:
        """Its path on the storage, and so on nginx: /BUCKET/KEY (the gateway's is /KEY)."""
        return f"/{BUCKET}/{self.key}"


@dataclass(frozen=True)
class Objects:
    small: list[StoredObject]
    bodies: dict[str, bytes]  # of the small objects, to check answers against
    large: StoredObject
    huge: StoredObject  # 4x the large one: memory must not grow with the object


def upload(s3: S3Server, large_size: int) -> Objects:
    """The bucket, 4 KiB objects, the large object and the 4x one, all random bytes."""
    client = s3.client()
    ensure_bucket(client, BUCKET)
    bodies: dict[str, bytes] = {}
    small: list[StoredObject] = []
    for i in range(SMALL_OBJECTS):
        key = f"obj/4k-{i}.bin"
        body = os.urandom(SMALL_SIZE)
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
        bodies[key] = body
        small.append(StoredObject(key, SMALL_SIZE, hashlib.sha256(body).hexdigest()))
    large = upload_random(client, "obj/large.bin", large_size)
    huge = upload_random(client, "obj/huge.bin", 4 * large_size)
    return Objects(small, bodies, large, huge)


def ensure_bucket(client: S3Client, bucket: str) -> None:
    """Create `bucket` unless it is there already."""
    if bucket not in {found["Name"] for found in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)


def upload_random(client: S3Client, key: str, size: int) -> StoredObject:
    """Upload `size` random bytes by multipart, one part in memory at a time."""
    digest = hashlib.sha256()
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts = []
    try:
        for number, offset in enumerate(range(0, size, PART_SIZE), start=1):
            data = os.urandom(min(PART_SIZE, size - offset))
            digest.update(data)
            answer = client.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        raise
    return StoredObject(key, size, digest.hexdigest())


def presigning_client(s3: S3Server) -> Any:
    """A botocore client that presigns with SigV4 (its default for S3 is still SigV2)."""
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3",
        region_name=s3.region,
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, proxies={}),
    )


def nginx_token(path: str, expires: int, secret: str) -> str:
    """The query nginx's `secure_link_md5 "$secure_link_expires$uri SECRET"` accepts."""
    digest = hashlib.md5(f"{expires}{path} {secret}".encode(), usedforsecurity=False).digest()
    md5 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"md5={md5}&expires={expires}"


# A signer: (object, expiry in unix seconds) -> request target.
Signer = Callable[[StoredObject, int], str]


@dataclass(frozen=True)
class Signers:
    """How each kind of peer's links are made."""

    s3: S3Server
    keyring: Keyring
    nginx_secret: str

    def direct(self) -> Signer:
        client = presigning_client(self.s3)

        def sign(obj: StoredObject, expires: int) -> str:
            url = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": BUCKET, "Key": obj.key},
                ExpiresIn=expires - int(time.time()),
            )
            return URL(url, encoded=True).raw_path_qs

        return sign

    def gateway(self) -> Signer:
        # The gateway's origin is s3://BUCKET: its paths are the keys.
        return lambda obj, expires: sign_path("/" + obj.key, self.keyring, expires_at=expires)

    def nginx(self) -> Signer:
        return lambda obj, expires: (
            f"{obj.path}?{nginx_token(obj.path, expires, self.nginx_secret)}"
        )

    def by_scheme(self, scheme: str) -> Signer:
        return {"direct": self.direct, "gateway": self.gateway, "nginx": self.nginx}[scheme]()


def links(sign: Signer, objects: Sequence[StoredObject], count: int) -> list[str]:
    """`count` targets cycling over `objects`, each with its own expiry (so its own token)."""
    first = int(time.time()) + LINK_LIFETIME
    return [sign(objects[i % len(objects)], first + i) for i in range(count)]


def write_targets(path: Path, targets: Sequence[str]) -> Path:
    """The list file rotate.lua reads: one target a line."""
    path.write_text("".join(target + "\n" for target in targets))
    return path
