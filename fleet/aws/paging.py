"""Following an AWS listing's pages, with an end: the cloud's answer decides how many there are.

An endpoint that answers every page with a next token (the same one again, or a new one each
time) would otherwise hold a worker in the loop forever, its list growing. A token seen before,
or more pages than a listing can have here, is a ``FleetError`` (retryable: the next try may
meet a sane answer); a listing is never cut short quietly, since a caller reads what is missing
as gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fleet.interface import FleetError

# ListCommandInvocations of one command, DescribeSessions of one instance: a handful of pages at most.
MAX_PAGES = 100
# Listings across an account (a region's inventory: DescribeInstanceInformation answers 50
# instances a page at most; IAM's simulation of many instances): 100,000 items and more.
MAX_ACCOUNT_PAGES = 2_000


def token_pages(
    call: Callable[..., dict[str, Any]], *, what: str, max_pages: int = MAX_PAGES, **params: Any
) -> Iterator[dict[str, Any]]:
    """Every page of ``call(**params)``, following ``NextToken``."""
    seen: set[bytes] = set()  # digests: a token is the cloud's, of any length
    token: str | None = None
    for _ in range(max_pages):
        page = call(**params, **({"NextToken": token} if token else {}))
        yield page
        token = page.get("NextToken")
        if not token:
            return
        digest = hashlib.sha256(str(token).encode("utf-8", errors="surrogatepass")).digest()
        if not isinstance(token, str) or digest in seen:
            raise FleetError(f"{what}: AWS answered a page token it had already given: the listing has no end")
        seen.add(digest)
    raise FleetError(f"{what}: more than {max_pages} pages: the listing has no end in sight")


def capped_pages(pages: Iterable[dict[str, Any]], *, what: str, max_pages: int = MAX_PAGES) -> Iterator[dict[str, Any]]:
    """The pages of a botocore paginator (which refuses a token repeated at once), at most ``max_pages``."""
    for number, page in enumerate(pages):
        if number >= max_pages:
            raise FleetError(f"{what}: more than {max_pages} pages: the listing has no end in sight")
        yield page
