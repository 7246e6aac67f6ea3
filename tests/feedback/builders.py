"""Checks as check-api stores them, written straight into `checks`, `check_matches` and `check_measures`.

The feedback service must not import check-api, so these builders write the rows that service writes, with a
`response` in the contract's check shape. Column meanings: `measure_codes` = the answer's `measures`
(required), `suspended_codes`, `withheld_codes`; `check_measures.disposition` = required | suspended |
withheld; natural persons' codes are stored masked in `checks.subject_code` (full only in `response`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.codes import citizen_id_check_char, mask_code, pii_hmac
from shared.db.engine import Database
from shared.ids import uuid7
from shared.lifecycle import SHANGHAI, business_date
from shared.outbox import enqueue_conn
from shared.settings import DEV_PII_HMAC_KEY

ORG_CODE = "91110105MA01ABCD5F"
# A citizen id with a valid check digit, so the PII regexes of the suite would notice it leaking.
PERSON_CODE = "44070319800101123" + citizen_id_check_char("44070319800101123")
CHECKING_DEPARTMENT = "江门市住房和城乡建设局"
COURT = "江门市人民法院"

_CONTENT = {
    "M01": ("限制政府采购", "依法限制参加政府采购活动"),
    "M02": ("限制招标投标", "依法必须招标项目中对失信被执行人投标依法予以限制"),
    "M05": ("审慎审批", "在行政审批中从严审核"),
    "M22": ("限制资质", "限制取得建筑业企业资质"),
    "M23": ("重点监管", "列为重点监管对象"),
    "M30": ("绿色通道", "行政审批中给予容缺受理、绿色通道"),
}


@dataclass(frozen=True)
class Match:
    entry_id: uuid.UUID = field(default_factory=uuid.uuid4)
    list_type: str = "LT01"
    list_kind: str = "black"
    list_name: str = "失信被执行人"
    issuing_department: str = COURT
    via: str = "subject"
    matched_code: str | None = None  # default: the checked subject's code
    matched_role: str | None = None
    entry_status: str = "active"


@dataclass(frozen=True)
class Measure:
    code: str
    kind: str = "penalty"
    mandatory: bool = True
    target: str = "entity"
    triggered_by: tuple[uuid.UUID, ...] | None = None  # default: every match
    list_types: tuple[str, ...] | None = None  # default: the list types of `triggered_by`


def _measure_json(m: Measure, **extra: Any) -> dict[str, Any]:
    category, content = _CONTENT.get(m.code, ("其他", f"措施{m.code}"))
    return {
        "code": m.code,
        "kind": m.kind,
        "category": category,
        "content": content,
        "mandatory": m.mandatory,
        "target": m.target,
        "legal_basis": "《关于对失信被执行人实施联合惩戒的合作备忘录》",
        "memorandum": "MEMO-SXBZXR",
        **extra,
    }


def _outcome(matches: list[Match], measures: list[Measure]) -> str:
    if not matches:
        return "clear"
    kinds = {m.kind for m in measures}
    if not kinds:
        return "review"
    if kinds == {"incentive"}:
        return "incentive"
    if kinds == {"penalty"}:
        return "penalty"
    return "mixed"


async def make_check(
    db: Database,
    *,
    client_id: uuid.UUID,
    department: str = CHECKING_DEPARTMENT,
    item_code: str = "I01",
    item_name: str = "建筑工程施工许可证核发",
    item_department: str = CHECKING_DEPARTMENT,
    checked_at: dt.datetime | None = None,
    subject_code: str = ORG_CODE,
    subject_kind: str = "uscc",
    subject_name: str = "北京某建设工程有限公司",
    matches: list[Match] | None = None,
    measures: Sequence[Measure | str] | None = None,
    suspended: Sequence[Measure | str] | None = None,
    withheld: Sequence[Measure | str] | None = None,
    due_days: int = 30,
    business_ref: str = "SP-2026-000123",
    operator: str = "clerk-017",
    pii_client: bool = True,
) -> uuid.UUID:
    """One stored check; returns its id (a UUIDv7 of `checked_at`).

    check-api keeps `response` as answered: a natural person's code appears in full there only when the
    checking client had `pii:read` (`pii_client`); otherwise only masked and as an HMAC."""
    checked_at = checked_at or dt.datetime.now(dt.UTC)
    check_id = uuid7(checked_at)
    check_date = business_date(checked_at)
    matches = list(matches or [])
    by_entry = {m.entry_id: m for m in matches}

    def norm(items: Sequence[Measure | str] | None) -> list[Measure]:
        return [Measure(code=i) if isinstance(i, str) else i for i in (items or [])]

    required, held, blocked = norm(measures), norm(suspended), norm(withheld)

    def entries_of(m: Measure) -> list[uuid.UUID]:
        return list(m.triggered_by) if m.triggered_by is not None else [x.entry_id for x in matches]

    def list_types_of(m: Measure) -> list[str]:
        if m.list_types is not None:
            return list(m.list_types)
        return sorted({by_entry[e].list_type for e in entries_of(m) if e in by_entry})

    person = subject_kind == "citizen_id"
    key = DEV_PII_HMAC_KEY.encode()
    feedback_due_on = check_date + dt.timedelta(days=due_days) if required else None
    shown_code = mask_code(subject_code, subject_kind) if person and not pii_client else subject_code
    response: dict[str, Any] = {
        "check_id": str(check_id),
        "checked_at": checked_at.astimezone(SHANGHAI).isoformat(),
        "item": {"code": item_code, "name": item_name, "department": item_department},
        "subject": {
            "code": shown_code,
            "given_code": shown_code,
            "kind": subject_kind,
            "name": subject_name if pii_client or not person else subject_name[0] + "*",
        },
        "outcome": _outcome(matches, required),
        "matches": [
            {
                "entry_id": str(m.entry_id),
                "via": m.via,
                "matched_code": m.matched_code or subject_code,
                "matched_role": m.matched_role,
                "list": {"code": m.list_type, "name": m.list_name, "kind": m.list_kind},
                "subject_code": m.matched_code or subject_code,
                "subject_name": subject_name,
                "reason": "有履行能力而拒不履行生效法律文书确定义务",
                "issuing_department": m.issuing_department,
                "decision_no": "（2026）粤07执1号",
                "listed_on": "2026-03-01",
                "expires_on": "2028-03-01",
                "status": m.entry_status,
            }
            for m in matches
        ],
        "measures": [_measure_json(m, triggered_by=[str(e) for e in entries_of(m)]) for m in required],
        "suspended_measures": [
            _measure_json(m, reason="核实期间暂不执行", blocked_by=[str(e) for e in entries_of(m)])
            for m in held
        ],
        "withheld_incentives": [
            _measure_json(m, reason="存在失信记录，暂停激励", blocked_by=[str(e) for e in entries_of(m)])
            for m in blocked
        ],
        "clean_record_years": 0 if matches else 3,
        "data_version": {"lists": "1", "catalogue": "1"},
        "feedback_due_on": feedback_due_on.isoformat() if feedback_due_on else None,
    }
    async with db.connection() as conn, conn.transaction():
        await conn.execute(
            """
            INSERT INTO checks (check_id, checked_at, check_date, client_id, department, item_code,
                item_department, subject_code, subject_kind, subject_hmac, operator, business_ref, request_hash,
                outcome, match_count, entry_ids, measure_codes, suspended_codes, withheld_codes, lists_version,
                catalogue_version, feedback_due_on, response)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, 1, 1,
                $20, $21)
            """,
            check_id,
            checked_at,
            check_date,
            client_id,
            department,
            item_code,
            item_department,
            mask_code(subject_code, subject_kind) if person else subject_code,
            subject_kind,
            pii_hmac(subject_code, key) if person else None,
            operator,
            business_ref,
            uuid.uuid4().hex,
            response["outcome"],
            len(matches),
            [m.entry_id for m in matches],
            [m.code for m in required],
            [m.code for m in held],
            [m.code for m in blocked],
            feedback_due_on,
            json.dumps(response, ensure_ascii=False),
        )
        # The summary check-api writes with every check (services/check_api/repository.py INSERT_CHECKS_SQL).
        await conn.execute(
            """
            INSERT INTO check_feedback (check_id, checked_at, check_date, department, item_code, match_count,
                list_types, required_count, complete, feedback_due_on)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8 = 0, $9)
            """,
            check_id,
            checked_at,
            check_date,
            department,
            item_code,
            len(matches),
            sorted({m.list_type for m in matches}),
            len(required),
            feedback_due_on,
        )
        if matches:
            await conn.executemany(
                """
                INSERT INTO check_matches (check_id, checked_at, entry_id, list_type, list_kind,
                    issuing_department, via, matched_code, matched_role, entry_status)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                """,
                [
                    (
                        check_id,
                        checked_at,
                        m.entry_id,
                        m.list_type,
                        m.list_kind,
                        m.issuing_department,
                        m.via,
                        # Natural persons' codes are kept masked outside `response`.
                        mask_code(m.matched_code or subject_code, "citizen_id")
                        if m.via != "subject" or person
                        else m.matched_code or subject_code,
                        m.matched_role,
                        m.entry_status,
                    )
                    for m in matches
                ],
            )
        rows = [
            (
                check_id,
                checked_at,
                m.code,
                disposition,
                m.kind,
                m.mandatory,
                m.target,
                entries_of(m),
                list_types_of(m),
            )
            for disposition, group in (("required", required), ("suspended", held), ("withheld", blocked))
            for m in group
        ]
        if rows:
            await conn.executemany(
                """
                INSERT INTO check_measures (check_id, checked_at, measure_code, disposition, kind, mandatory,
                    target, triggered_by, list_types)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                """,
                rows,
            )
    return check_id


async def make_entry_row(
    db: Database,
    *,
    entry_id: uuid.UUID | None = None,
    list_type: str = "LT01",
    subject_code: str = ORG_CODE,
    subject_kind: str = "uscc",
    subject_name: str = "北京某建设工程有限公司",
    issuing_department: str = COURT,
) -> uuid.UUID:
    """A list entry row (the list type must exist: load the catalogue first)."""
    entry_id = entry_id or uuid.uuid4()
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO list_entries (entry_id, list_type, list_kind, subject_code, subject_kind, subject_name,
                original_code, original_kind, reason, decision_no, issuing_department, listed_on, expires_on,
                status, content_hash)
            VALUES ($1, $2, 'black', $3, $4, $5, $3, $4, '有履行能力而拒不履行生效法律文书确定义务',
                '（2026）粤07执1号', $6, $7, $8, 'active', 'x')
            """,
            entry_id,
            list_type,
            subject_code,
            subject_kind,
            subject_name,
            issuing_department,
            dt.date(2026, 3, 1),
            dt.date(2028, 3, 1),
        )
    return entry_id


async def add_outbox(
    db: Database,
    *,
    topic: str = "feedback",
    payload: dict[str, Any] | None = None,
    target_url: str | None = None,
    subscription_id: uuid.UUID | None = None,
) -> uuid.UUID:
    async with db.connection() as conn:
        return await enqueue_conn(
            conn,
            topic=topic,
            payload=payload or {"check_id": str(uuid.uuid4()), "decision": "approved", "measures": []},
            target_url=target_url,
            subscription_id=subscription_id,
        )


async def add_subscription(
    db: Database, *, client_id: uuid.UUID, callback_url: str, secret: str, active: bool = True
) -> uuid.UUID:
    subscription_id = uuid.uuid4()
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO subscriptions (subscription_id, client_id, callback_url, secret, active) "
            "VALUES ($1, $2, $3, $4, $5)",
            subscription_id,
            client_id,
            callback_url,
            secret,
            active,
        )
    return subscription_id


async def make_due(db: Database) -> None:
    """Every pending message due now (a test's transaction has one `now()`, so backoff never elapses)."""
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE outbox SET next_attempt_at = now() - interval '1 second' WHERE state = 'pending'"
        )


async def outbox_rows(db: Database) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM outbox ORDER BY id")]
