"""Entry lifecycle (contract: list-sync → Entries): the transition table and the status an entry reads as.

    objection           active            → objection_pending
    objection_rejected  objection_pending → active
    objection_upheld    objection_pending → ended (objection_upheld)
    repair              active | objection_pending → ended (repaired)
    removal             active | objection_pending → ended (removed)

An entry whose `expires_on` has passed reads `ended` / `expired` whatever its stored status. The expiry job
(list-sync scheduler) later records an `expired` event and stores that status too, so the stored status
converges on the read one; reading never waits for it.

Events in an entry's history: `published`, `updated` (content changed by a sync), the five lifecycle events
above, `removed` (ended by a sync: upstream status `removed`, or missing from a complete snapshot) and
`expired`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

EVENT_TYPES = ("objection", "objection_upheld", "objection_rejected", "repair", "removal")
HISTORY_EVENTS = ("published", "updated", *EVENT_TYPES, "removed", "expired")

# event type → (statuses it may start from, status after, end reason)
TRANSITIONS: dict[str, tuple[frozenset[str], str, str | None]] = {
    "objection": (frozenset({"active"}), "objection_pending", None),
    "objection_rejected": (frozenset({"objection_pending"}), "active", None),
    "objection_upheld": (frozenset({"objection_pending"}), "ended", "objection_upheld"),
    "repair": (frozenset({"active", "objection_pending"}), "ended", "repaired"),
    "removal": (frozenset({"active", "objection_pending"}), "ended", "removed"),
}


def business_date(at: dt.datetime | None = None) -> dt.date:
    """The Asia/Shanghai calendar date of an instant (now by default)."""
    return (at or dt.datetime.now(dt.UTC)).astimezone(SHANGHAI).date()


@dataclass(frozen=True, slots=True)
class EffectiveStatus:
    status: str
    end_reason: str | None
    ended_on: dt.date | None


def effective_status(
    status: str, end_reason: str | None, ended_on: dt.date | None, expires_on: dt.date | None, today: dt.date
) -> EffectiveStatus:
    """The status an entry reads as on `today` (expiry is computed, never waits for a job)."""
    if status != "ended" and expires_on is not None and expires_on < today:
        return EffectiveStatus("ended", "expired", expires_on + dt.timedelta(days=1))
    return EffectiveStatus(status, end_reason, ended_on)


class TransitionRefused(Exception):
    def __init__(self, event: str, current: str) -> None:
        super().__init__(f"{event!r} is not allowed from status {current!r}")
        self.event = event
        self.current = current


def transition(event: str, current: str) -> tuple[str, str | None]:
    """(status after, end reason) for `event` applied to an entry reading `current`; refuses the rest."""
    allowed, after, reason = TRANSITIONS[event]
    if current not in allowed:
        raise TransitionRefused(event, current)
    return after, reason
