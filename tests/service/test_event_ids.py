"""Usage rows' ids: UUIDv7, so that they sort by time and a table's inserts stay cheap."""

from __future__ import annotations

import time
import uuid

from chatservice.accounting.event_ids import new_event_id


def test_an_id_is_a_version_7_uuid_of_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = new_event_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after
    assert uuid.UUID(str(made)) == made  # its text form reads back as the same id


def test_ids_made_in_later_milliseconds_sort_after() -> None:
    made = []
    for _ in range(5):
        made.append(new_event_id())
        time.sleep(0.002)
    assert made == sorted(made)
    assert [str(i) for i in made] == sorted(str(i) for i in made)  # as stored in SQLite


def test_ids_of_one_millisecond_differ() -> None:
    made = {new_event_id() for _ in range(20_000)}
    assert len(made) == 20_000
    assert len({i.int & ((1 << 62) - 1) for i in made}) == 20_000  # the random part varies
