"""The archiving rules (relay/domain/archive.py), the file route's range and disposition rules, and the
`[archive]` settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay.archive import BadStatus, ByteRange, FetchedFile, FileTooLarge, HostRefused, RangeNotSatisfiable
from relay.domain.archive import (
    MAX_FILES_PER_RESULT,
    RETRY_SCHEDULE_S,
    after_fetch,
    all_settled,
    files_to_archive,
)
from relay.errors import ConfigError
from relay.file_models import FileClaim, FileStatus
from relay.routes.files import disposition, parse_range
from tests.conftest import REPLICATE_SECRET, make_settings

NOW = 1_800_000_000.0


def claim(attempts: int = 1) -> FileClaim:
    return FileClaim(
        "fil_1", 7, "replicate", "https://replicate.delivery/a.png", "replicate.delivery", attempts
    )


def test_a_fetched_file_is_archived_with_what_was_measured() -> None:
    result = after_fetch(claim(), FetchedFile(12, "ab" * 32, "image/png"), NOW)
    assert (result.status, result.next_attempt_at, result.bytes, result.sha256) == (
        FileStatus.ARCHIVED,
        None,
        12,
        "ab" * 32,
    )
    assert (result.content_type, result.error, result.attempts) == ("image/png", None, 1)


def test_a_retryable_failure_waits_its_turn_on_the_schedule_then_fails() -> None:
    """A 500 is retried after the attempt's delay (no jitter at 0.5); past the schedule it is failed."""
    first = after_fetch(claim(1), BadStatus(500, "h"), NOW, rand=lambda: 0.5)
    assert (first.status, first.next_attempt_at, first.error) == (
        FileStatus.PENDING,
        NOW + 5.0,
        "h answered 500",
    )
    last = after_fetch(claim(len(RETRY_SCHEDULE_S) + 1), BadStatus(503, "h"), NOW)
    assert (last.status, last.next_attempt_at) == (FileStatus.FAILED, None)


@pytest.mark.parametrize(
    "error", [BadStatus(404, "h"), BadStatus(403, "h"), FileTooLarge(10), HostRefused("no")]
)
def test_a_failure_that_will_not_pass_fails_at_once(error: Exception) -> None:
    result = after_fetch(claim(), error, NOW)  # type: ignore[arg-type]
    assert (result.status, result.next_attempt_at, result.error) == (FileStatus.FAILED, None, str(error))


def test_a_jobs_files_are_settled_once_none_is_pending_or_in_flight() -> None:
    assert all_settled(["archived", "failed"])
    assert not all_settled(["archived", "pending"]) and not all_settled(["fetching"])
    assert not all_settled([])  # no files: nothing for archiving to settle


def test_files_are_the_results_urls_on_archive_hosts_in_order_and_capped() -> None:
    result = {"output": ["https://a.replicate.delivery/1.png", "https://elsewhere.example/2.png"], "x": 3}
    ids = iter(f"fil_{i}" for i in range(1000))
    (file,) = files_to_archive(result, ["*.replicate.delivery"], "https://relay.example/", lambda: next(ids))
    assert (file.id, file.pointer, file.source_url, file.status) == (
        "fil_0",
        "/output/0",
        "https://a.replicate.delivery/1.png",
        FileStatus.PENDING,
    )
    assert file.url == "https://relay.example/v1/files/fil_0"
    many = [f"https://replicate.delivery/{i}" for i in range(MAX_FILES_PER_RESULT + 5)]
    assert len(files_to_archive(many, ["replicate.delivery"], "http://r")) == MAX_FILES_PER_RESULT
    assert files_to_archive(result, [], "http://r") == ()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 10)),
        ("bytes=5-", ByteRange(5)),
        ("bytes=-3", ByteRange(97)),
        ("bytes=-500", ByteRange(0)),
        ("bytes=90-500", ByteRange(90, 501)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("bytes=9-2", None),
        ("items=0-1", None),
    ],
)
def test_a_range_header_is_read_as_one_range_or_none(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("image/png", "inline"),
        ("video/mp4", "inline"),
        ("audio/mpeg; rate=1", "inline"),
        ("image/svg+xml", "attachment"),
        ("text/html", "attachment"),
        ("application/octet-stream", "attachment"),
    ],
)
def test_only_plain_media_is_shown_inline(content_type: str, expected: str) -> None:
    assert disposition(content_type) == expected


def archiving(tmp_path: Path, table: Any = None, **source: Any) -> Any:
    """Settings with the `[archive]` table `table` and these keys in the replicate source."""
    replicate = {"kind": "replicate", "secret": REPLICATE_SECRET, **source}
    extra = {} if table is None else {"archive": table}
    return make_settings(tmp_path, sources={"replicate": replicate}, **extra)


def test_a_kind_archives_its_own_hosts_by_default(tmp_path: Path) -> None:
    settings = archiving(tmp_path, {"store": "s3://bucket-1/p", "max_file_bytes": 10}, archive=True)
    assert settings.sources["replicate"].archive_hosts == ("replicate.delivery", "*.replicate.delivery")
    assert settings.archive is not None and settings.archive.max_file_bytes == 10


@pytest.mark.parametrize(
    ("archive", "source", "message"),
    [
        (None, {"archive": True}, "sources.replicate.archive: needs an [archive] table"),
        ({"store": "ftp://x"}, {}, "archive.store: unsupported archive store"),
        ({"store": "s3://B"}, {}, "archive.store: invalid S3 store URL"),
        ({}, {}, "archive.store: required"),
        ({"store": "file:///f", "max_file_bytes": 0}, {}, "archive.max_file_bytes: must be positive"),
        ({"store": "file:///f", "colour": 1}, {}, "archive.colour: unknown key"),
        ({"store": "file:///f"}, {"archive": True, "archive_hosts": ["https://x"]}, "is not a host name"),
        ({"store": "file:///f"}, {"archive": "yes"}, "sources.replicate.archive: expected true or false"),
        ({"store": "file:///f", "s3_access_key_id_env": "NOPE"}, {}, "archive.s3_access_key_id_env"),
    ],
)
def test_archive_settings_are_refused_with_the_key_named(
    tmp_path: Path, archive: Any, source: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        archiving(tmp_path, archive, **source)


def test_a_generic_kind_must_name_its_archive_hosts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="archive_hosts: required for kind 'standard-webhooks'"):
        make_settings(
            tmp_path,
            archive={"store": "file:///f"},
            sources={
                "demo": {
                    "kind": "standard-webhooks",
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "archive": True,
                }
            },
        )
