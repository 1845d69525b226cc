from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from licensing_service.adapters.sqltime import from_db, to_db
from licensing_service.api.render import iso


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 30, 5, 123456, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 30, 5, 1000, tzinfo=UTC),
    ],
)
def test_iso_matches_what_orjson_writes_in_responses(when: datetime) -> None:
    assert iso(when) == orjson.loads(orjson.dumps(when, option=orjson.OPT_UTC_Z))


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 7, 9, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 7, 9, 23, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_db_text_round_trips_and_sorts(when: datetime) -> None:
    text = to_db(when)
    assert len(text) == 26
    assert from_db(text) == when
    later = to_db(when + timedelta(microseconds=1))
    assert later > text
