"""Recording storage for tests: devcloud's S3 (moto's server) through django-storages, the way
settings.py configures it when PASSPORT_RECORDINGS_BUCKET is set."""

from __future__ import annotations

import uuid
from typing import Any

from botocore.config import Config

from terminal.storage import bucket_ensure


def s3_recordings(endpoint_url: str, bucket: str) -> dict[str, Any]:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url,
            "region_name": "us-east-1",
            "file_overwrite": True,
            "querystring_auth": False,
            "client_config": Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}),
        },
    }


def use_s3_recordings(settings: Any, endpoint_url: str, bucket: str | None = None) -> str:
    """Point the "recordings" storage at an S3 bucket (created if missing); returns its name."""
    bucket = bucket or f"recordings-{uuid.uuid4().hex[:12]}"
    settings.STORAGES = {**settings.STORAGES, "recordings": s3_recordings(endpoint_url, bucket)}
    bucket_ensure()
    return bucket


# Nothing listens here: a storage that cannot be reached at all.
UNREACHABLE = "http://127.0.0.1:9"
