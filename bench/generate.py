"""Deterministic benchmark data: list entries with valid codes, their upstream-feed pages, probe subjects,
and synthetic checks for the statistics benchmark.

Everything derives from a seed. Records come in chunks of `CHUNK` seeded by (seed, chunk number), so record
`i` is the same whatever N is (the 100 k data set is a prefix of the 1 M one) and chunks can be generated in
parallel. Codes are unique by construction: a USCC's organisation-code body and a citizen id's (region, birth
date, sequence) are bijective functions of an index, with separate index ranges for listed subjects, linked
persons and the "clear" probe subjects that must never match.

    .venv/bin/python -m bench.generate --n 100000 --out bench/results/data/x   # writes a data set
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import multiprocessing
import random
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shared.codes import citizen_id_check_char, org_code_check_char, uscc_check_char
from shared.lifecycle import business_date

GENERATOR_VERSION = 1
CHUNK = 10_000  # records per seeded chunk
PAGE_SIZE = 1_000  # records per pre-rendered upstream page (CHUNK is a multiple of it)
SOURCE_NAME = "bench-snapshot"  # the snapshot source the bench creates; COPY-loaded rows carry it too
ITEM_CODE = "I07"  # 政府采购供应商资格审查: maps LT01-LT04 and LT06 to M01
OPERATOR = "bench-clerk-01"

# list_entries columns in COPY order (text format, tab-separated, \N for NULL).
ENTRY_COLUMNS = (
    "entry_id",
    "list_type",
    "list_kind",
    "subject_code",
    "subject_kind",
    "subject_org_code",
    "subject_name",
    "original_code",
    "original_kind",
    "linked_persons",
    "reason",
    "decision_no",
    "issuing_department",
    "listed_on",
    "expires_on",
    "status",
    "end_reason",
    "ended_on",
    "source_name",
    "source_record_id",
    "upstream_updated_at",
    "content_hash",
    "created_by_client",
    "created_at",
    "updated_at",
)
PERSON_COLUMNS = ("entry_id", "person_code", "role", "person_name")

# --- code spaces ---------------------------------------------------------------------------------------

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # also valid organisation-code body characters
_ORG_SPACE = 31**8
_ORG_MUL = 1_000_000_007  # prime, so coprime with 31**8: idx -> body is a bijection
_ORG_ADD = 123_456_789_011
CLEAR_ORG_BASE = 1 << 38  # listed subjects use indexes below this, clear probes above

# County-level GB/T 2260 codes (province prefixes all known to shared.codes).
REGIONS = (
    "440703", "440704", "440705", "440781", "440783", "440784", "440785", "440104", "440106", "440305",
    "440304", "440604", "440606", "440402", "442000", "441900", "110105", "110108", "310104", "310115",
    "320102", "330106", "350203", "370202", "420106", "430104", "500103", "510104", "610113", "450103",
)  # fmt: skip
_BIRTH_FIRST = dt.date(1950, 1, 1)
_BIRTH_DAYS = (dt.date(2004, 12, 31) - _BIRTH_FIRST).days + 1
_PERSON_SPACE = _BIRTH_DAYS * 1000 * len(REGIONS)
_PERSON_MUL = 1_000_000_007  # prime > _PERSON_SPACE, so coprime with it
_PERSON_ADD = 98_765_431
LINKED_PERSON_BASE = 150_000_000  # subjects: record index; linked persons: this + index
SECOND_PERSON_BASE = 300_000_000  # a second linked person of an entry: this + index
CLEAR_PERSON_BASE = 450_000_000  # clear probe persons: this + j (j < 150 M)
_birth_strings: list[str] = []


def _births() -> list[str]:
    if not _birth_strings:
        _birth_strings.extend(
            (_BIRTH_FIRST + dt.timedelta(days=d)).strftime("%Y%m%d") for d in range(_BIRTH_DAYS)
        )
    return _birth_strings


def org_body(idx: int) -> str:
    """The 8-character organisation-code body of subject `idx` (a bijection on [0, 31**8))."""
    p = (idx * _ORG_MUL + _ORG_ADD) % _ORG_SPACE
    out = []
    for _ in range(8):
        p, r = divmod(p, 31)
        out.append(_USCC_ALPHABET[r])
    return "".join(out)


def make_uscc(idx: int, prefix: str, region: str) -> str:
    """A valid USCC: `prefix` (registration authority + type), region, org body, its GB 11714 check, MOD 31."""
    body = org_body(idx)
    first17 = prefix + region + body + org_code_check_char(body)
    return first17 + uscc_check_char(first17)


def make_citizen_id(idx: int) -> str:
    """A valid 18-digit citizen id (real birth date 1950-2004, MOD 11-2), unique per `idx`."""
    p = (idx * _PERSON_MUL + _PERSON_ADD) % _PERSON_SPACE
    day, rest = p % _BIRTH_DAYS, p // _BIRTH_DAYS
    first17 = f"{REGIONS[rest // 1000]}{_births()[day]}{rest % 1000:03d}"
    return first17 + citizen_id_check_char(first17)


# --- realistic content ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ListTypeSpec:
    code: str
    kind: str
    authority: str
    validity_days: int | None
    weight: int
    person_share: float  # share of entries whose subject is a natural person
    linked_share: float  # share of organisation entries with linked persons
    reason: str
    decision_prefix: str


# Kinds, authorities and validities as in the demo catalogue (shared/data/demo-catalogue.json).
LIST_TYPES = (
    ListTypeSpec("LT01", "black", "人民法院", 730, 30, 0.4, 0.4, "有履行能力而拒不履行生效法律文书确定义务", "（{y}）粤07执"),
    ListTypeSpec("LT02", "black", "税务机关", 1095, 5, 0.0, 0.4, "偷税数额较大且占应纳税额百分之十以上", "税稽罚〔{y}〕"),
    ListTypeSpec("LT03", "black", "市场监督管理部门", 1095, 6, 0.0, 0.4, "提交虚假材料取得市场主体登记被依法撤销", "市监信〔{y}〕"),
    ListTypeSpec("LT04", "black", "财政部门", None, 2, 0.0, 0.4, "提供虚假材料谋取中标、成交", "财采罚〔{y}〕"),
    ListTypeSpec("LT05", "black", "应急管理部门", 1095, 2, 0.0, 0.4, "发生较大以上生产安全责任事故", "应急罚〔{y}〕"),
    ListTypeSpec("LT06", "black", "人力资源社会保障部门", 1095, 3, 0.0, 0.4, "克扣、无故拖欠农民工工资数额较大", "人社欠薪〔{y}〕"),
    ListTypeSpec("LT07", "watch", "市场监督管理部门", None, 34, 0.0, 0.15, "未按规定期限公示年度报告", "市监异〔{y}〕"),
    ListTypeSpec("LT08", "red", "税务机关", 365, 13, 0.0, 0.05, "年度纳税信用评价为A级", "税信A〔{y}〕"),
    ListTypeSpec("LT09", "red", "海关", 1095, 5, 0.0, 0.05, "通过海关高级认证", "海关认证〔{y}〕"),
)  # fmt: skip
_LT_CUM_WEIGHTS = list(itertools.accumulate(lt.weight for lt in LIST_TYPES))
_CITIES = ("江门市", "江门市", "江门市", "江门市", "广州市", "深圳市", "佛山市", "珠海市", "中山市", "东莞市")
_TRADE = tuple(
    "恒达宏图华盛金源鑫泰永安新锐广益福满汇通嘉禾瑞丰荣昌盛世天成同创伟业兴隆远航致远"
    "中联卓越博创诚信东升丰泽冠华海纳合力锦程俊杰凯旋立信明达南粤侨乡润发顺和泰和万通"[k : k + 2]
    for k in range(0, 80, 2)
)
_INDUSTRY = (
    "建设工程", "贸易", "餐饮管理", "物流", "科技", "电子", "建材", "装饰工程", "劳务派遣", "食品", "机械设备",
    "房地产开发", "环保科技", "医药", "服装", "五金制品", "汽车运输", "印刷", "电器", "家具",
)  # fmt: skip
_SURNAMES: tuple[str, ...] = (*"王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗梁谢宋郑冯邓曹彭曾萧田", "欧阳", "司徒")
_GIVEN = tuple("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂华建国志文辉红玲")
# (prefix, weight): registration authority + organisation type, all in the GB 32100 table.
_USCC_PREFIXES = ("91",) * 80 + ("92",) * 10 + ("93",) * 2 + ("12",) * 3 + ("52",) * 3 + ("51",) * 2
_ROLES_EXTRA = ("responsible_person", "actual_controller", "directly_responsible")


@dataclasses.dataclass(frozen=True, slots=True)
class GenEntry:
    index: int
    entry_id: uuid.UUID
    list_type: str
    list_kind: str
    subject_code: str
    subject_kind: str  # uscc | citizen_id
    subject_org_code: str | None
    subject_name: str
    linked_persons: tuple[tuple[str, str, str], ...]  # (role, code, name)
    reason: str
    decision_no: str
    issuing_department: str
    listed_on: dt.date
    expires_on: dt.date | None
    status: str  # active | objection_pending | ended (stored)
    end_reason: str | None
    ended_on: dt.date | None
    updated_at: dt.datetime

    @property
    def source_id(self) -> str:
        return f"BENCH-{self.index:010d}"

    def in_effect(self, today: dt.date) -> bool:
        return (
            self.status in ("active", "objection_pending")
            and self.listed_on <= today
            and (self.expires_on is None or today <= self.expires_on)
        )

    @property
    def upstream_status(self) -> str:
        return "removed" if self.status == "ended" else "active"


def _person_name(rng: random.Random) -> str:
    given = rng.choice(_GIVEN) + (rng.choice(_GIVEN) if rng.random() < 0.7 else "")
    return rng.choice(_SURNAMES) + given


def _org_name(rng: random.Random, prefix: str, city: str) -> str:
    trade = rng.choice(_TRADE)
    if prefix == "92":
        return f"{city}{trade}{rng.choice(('餐饮店', '五金店', '便利店', '汽车修理厂', '服装店'))}"
    if prefix == "93":
        return f"{city}{trade}{rng.choice(('种养', '果蔬', '水产'))}专业合作社"
    if prefix == "12":
        return f"{city}{trade}{rng.choice(('技术服务中心', '检测中心', '培训中心'))}"
    if prefix in ("51", "52"):
        return f"{city}{trade}{rng.choice(('职业培训学校', '行业协会', '社会工作服务中心'))}"
    suffix = "股份有限公司" if rng.random() < 0.1 else "有限公司"
    return f"{city}{trade}{rng.choice(_INDUSTRY)}{suffix}"


def _uuid4(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _dates(
    rng: random.Random, lt: ListTypeSpec, today: dt.date
) -> tuple[dt.date, dt.date | None, str, str | None, dt.date | None]:
    """(listed_on, expires_on, status, end_reason, ended_on): ~83 % in effect, ~9 % ended, ~8 % expired."""
    validity = lt.validity_days
    if validity is None and lt.code == "LT04":
        validity = rng.choice((365, 730, 1095))  # 禁止期 of one to three years, set per decision
    roll = rng.random()
    if roll < 0.83:
        span = min(validity - 1, 1400) if validity else 1400
        listed = today - dt.timedelta(days=rng.randint(1, span))
        expires = listed + dt.timedelta(days=validity) if validity else None
        return listed, expires, "active" if roll < 0.82 else "objection_pending", None, None
    if roll < 0.92 or validity is None:
        age = rng.randint(30, 2000)
        listed = today - dt.timedelta(days=age)
        expires = listed + dt.timedelta(days=validity) if validity else None
        ended = listed + dt.timedelta(days=rng.randint(1, age - 1))
        if expires is not None and ended > expires:
            ended = expires
        reason = "removed" if lt.code in ("LT01", "LT07") or rng.random() < 0.5 else "repaired"
        return listed, expires, "ended", reason, ended
    listed = today - dt.timedelta(days=validity + rng.randint(1, 700))
    return listed, listed + dt.timedelta(days=validity), "active", None, None


def generate_chunk(seed: int, chunk: int, n: int, today: dt.date) -> list[GenEntry]:
    """Records [chunk*CHUNK, min(n, (chunk+1)*CHUNK)); the same records for a seed whatever n is."""
    rng = random.Random(f"onecheck-bench:{seed}:{chunk}")
    start = chunk * CHUNK
    stop = min(n, start + CHUNK)
    out: list[GenEntry] = []
    recent_orgs: list[tuple[str, str, str]] = []  # (code, org_code, name) to list a subject twice
    for i in range(start, stop):  # record i depends only on the draws before it, never on n
        lt = rng.choices(LIST_TYPES, cum_weights=_LT_CUM_WEIGHTS)[0]
        entry_id = _uuid4(rng)
        city = rng.choice(_CITIES)
        listed, expires, status, end_reason, ended = _dates(rng, lt, today)
        persons: tuple[tuple[str, str, str], ...] = ()
        if rng.random() < lt.person_share:
            code, kind, org_code, name = make_citizen_id(i), "citizen_id", None, _person_name(rng)
        else:
            kind = "uscc"
            if recent_orgs and rng.random() < 0.05:
                code, org_code, name = recent_orgs[rng.randrange(len(recent_orgs))]
            else:
                prefix = rng.choice(_USCC_PREFIXES)
                code = make_uscc(i, prefix, rng.choice(REGIONS))
                org_code, name = code[8:17], _org_name(rng, prefix, city)
                recent_orgs.append((code, org_code, name))
                if len(recent_orgs) > 200:
                    recent_orgs.pop(0)
            if rng.random() < lt.linked_share:
                persons = (
                    ("legal_representative", make_citizen_id(LINKED_PERSON_BASE + i), _person_name(rng)),
                )
                if rng.random() < 0.1:
                    second = make_citizen_id(SECOND_PERSON_BASE + i)
                    persons += ((rng.choice(_ROLES_EXTRA), second, _person_name(rng)),)
        year = listed.year
        decision_no = f"{lt.decision_prefix.format(y=year)}{rng.randint(1, 9999)}号"
        updated = dt.datetime.combine(ended or listed, dt.time(9, 0), dt.UTC) + dt.timedelta(
            seconds=rng.randint(0, 8 * 3600)
        )
        out.append(
            GenEntry(
                index=i,
                entry_id=entry_id,
                list_type=lt.code,
                list_kind=lt.kind,
                subject_code=code,
                subject_kind=kind,
                subject_org_code=org_code,
                subject_name=name,
                linked_persons=persons,
                reason=lt.reason,
                decision_no=decision_no,
                issuing_department=city + lt.authority,
                listed_on=listed,
                expires_on=expires,
                status=status,
                end_reason=end_reason,
                ended_on=ended,
                updated_at=updated,
            )
        )
    return out


def iter_entries(seed: int, n: int, today: dt.date) -> Iterator[GenEntry]:
    for chunk in range(chunk_count(n)):
        yield from generate_chunk(seed, chunk, n, today)


def chunk_count(n: int) -> int:
    return (n + CHUNK - 1) // CHUNK


# --- renderings ----------------------------------------------------------------------------------------


def content_hash(e: GenEntry) -> str:
    """The same digest as `shared.entries.content_hash` for this record (tests hold them equal)."""
    content = {
        "list_type": e.list_type,
        "subject_code": e.subject_code,
        "subject_name": e.subject_name,
        "linked_persons": sorted(e.linked_persons),
        "reason": e.reason,
        "decision_no": e.decision_no,
        "issuing_department": e.issuing_department,
        "listed_on": e.listed_on.isoformat(),
        "expires_on": e.expires_on.isoformat() if e.expires_on else None,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _persons_json(e: GenEntry) -> str:
    return json.dumps([{"role": r, "code": c, "name": n} for r, c, n in e.linked_persons], ensure_ascii=False)


def _nul(value: object) -> str:
    return "\\N" if value is None else str(value)


def entry_tsv(e: GenEntry, today: dt.date) -> str:
    """One list_entries line in COPY text format (our fields hold no tab, newline or backslash)."""
    stamp = f"{today.isoformat()} 00:00:00+00"
    return (
        "\t".join(
            (
                str(e.entry_id),
                e.list_type,
                e.list_kind,
                e.subject_code,
                e.subject_kind,
                _nul(e.subject_org_code),
                e.subject_name,
                e.subject_code,
                e.subject_kind,
                _persons_json(e),
                e.reason,
                e.decision_no,
                e.issuing_department,
                e.listed_on.isoformat(),
                _nul(e.expires_on),
                e.status,
                _nul(e.end_reason),
                _nul(e.ended_on),
                SOURCE_NAME,
                e.source_id,
                e.updated_at.isoformat(),
                content_hash(e),
                "\\N",
                stamp,
                stamp,
            )
        )
        + "\n"
    )


def person_tsv(e: GenEntry) -> str:
    return "".join(f"{e.entry_id}\t{code}\t{role}\t{name}\n" for role, code, name in e.linked_persons)


def upstream_record(e: GenEntry) -> dict[str, Any]:
    """The record as the upstream platform's feed gives it (contract: list-sync → Upstream feed)."""
    return {
        "source_id": e.source_id,
        "list_type": e.list_type,
        "subject": {"code": e.subject_code, "name": e.subject_name, "kind": e.subject_kind},
        "linked_persons": [{"role": r, "code": c, "name": n} for r, c, n in e.linked_persons],
        "reason": e.reason,
        "decision_no": e.decision_no,
        "issuing_department": e.issuing_department,
        "listed_on": e.listed_on.isoformat(),
        "expires_on": e.expires_on.isoformat() if e.expires_on else None,
        "status": e.upstream_status,
        "updated_at": e.updated_at.isoformat(),
    }


def page_path(pages_dir: Path, page: int) -> Path:
    return pages_dir / f"p{page:07d}.json"


# --- probes ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    subject: dict[str, str]
    related_persons: tuple[dict[str, str], ...]
    expect: str  # clear | match
    via: str  # clear | subject | related_person | responsible_person

    def check_body(self, number: int) -> dict[str, Any]:
        return {
            "item_code": ITEM_CODE,
            "subject": self.subject,
            "related_persons": list(self.related_persons),
            "business_ref": f"BENCH-{number:07d}",
            "operator": OPERATOR,
        }

    def batch_subject(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.subject)
        if self.related_persons:
            out["related_persons"] = list(self.related_persons)
        return out


def _clear_org(rng: random.Random, j: int) -> dict[str, str]:
    prefix = rng.choice(_USCC_PREFIXES)
    return {
        "code": make_uscc(CLEAR_ORG_BASE + j, prefix, rng.choice(REGIONS)),
        "name": _org_name(rng, prefix, rng.choice(_CITIES)),
        "kind": "uscc",
    }


def _person(code: str, name: str) -> dict[str, str]:
    return {"code": code, "name": name, "kind": "citizen_id"}


def _legal_rep(code: str, name: str) -> dict[str, str]:
    return {"role": "legal_representative", "code": code, "name": name}


def make_probes(
    seed: int, n: int, today: dt.date, count: int, match_share: float = 0.1, sample_chunks: int = 40
) -> list[Probe]:
    """`count` probes: round(count × match_share) match an entry in effect, the rest are valid unlisted codes.

    Matches: 50 % an organisation's own entry, 15 % a natural person's own entry (via subject), 15 % a clear
    organisation whose legal representative is a listed person (via related_person), 10 % a person named in
    an organisation's entry checked as the subject and 10 % as a related person (via responsible_person).
    """
    rng = random.Random(f"onecheck-bench-probes:{seed}:{n}:{count}")
    n_match = round(count * match_share)
    chunks = chunk_count(n)
    picked = sorted({rng.randrange(chunks) for _ in range(min(chunks, sample_chunks))})
    orgs: list[GenEntry] = []
    persons: list[GenEntry] = []
    linked: list[tuple[str, str]] = []
    for c in picked:
        for e in generate_chunk(seed, c, n, today):
            if not e.in_effect(today):
                continue
            if e.subject_kind == "citizen_id":
                persons.append(e)
            else:
                orgs.append(e)
                linked.extend((code, name) for _, code, name in e.linked_persons)
    if not orgs and n_match:
        raise ValueError("no organisation entry in effect to probe: generate more entries")
    probes: list[Probe] = []
    j = 0  # clear subject counter
    for k in range(n_match):
        share = (k % 20) / 20  # deterministic 50/15/15/10/10 split
        if share < 0.5 or (share < 0.8 and not persons) or (share >= 0.8 and not linked):
            e = rng.choice(orgs)
            subject = {"code": e.subject_code, "name": e.subject_name, "kind": "uscc"}
            probes.append(Probe(subject, (), "match", "subject"))
        elif share < 0.65:
            e = rng.choice(persons)
            probes.append(Probe(_person(e.subject_code, e.subject_name), (), "match", "subject"))
        elif share < 0.8:
            e = rng.choice(persons)
            rep = (_legal_rep(e.subject_code, e.subject_name),)
            probes.append(Probe(_clear_org(rng, j), rep, "match", "related_person"))
            j += 1
        elif share < 0.9:
            code, name = rng.choice(linked)
            probes.append(Probe(_person(code, name), (), "match", "responsible_person"))
        else:
            code, name = rng.choice(linked)
            probes.append(Probe(_clear_org(rng, j), (_legal_rep(code, name),), "match", "responsible_person"))
            j += 1
    for _ in range(count - n_match):
        if rng.random() < 0.9:
            org = _clear_org(rng, j)
            rel: tuple[dict[str, str], ...] = ()
            if rng.random() < 0.5:
                rel = (_legal_rep(make_citizen_id(CLEAR_PERSON_BASE + j), _person_name(rng)),)
            probes.append(Probe(org, rel, "clear", "clear"))
        else:
            subject = _person(make_citizen_id(CLEAR_PERSON_BASE + j), _person_name(rng))
            probes.append(Probe(subject, (), "clear", "clear"))
        j += 1
    rng.shuffle(probes)
    return probes


def write_probes(probes: Sequence[Probe], out_dir: Path) -> tuple[Path, Path]:
    """probes.jsonl (one POST /v1/checks body per line), probe-subjects.jsonl (batch subjects, same order)
    and probes-expect.jsonl (what each should find: {"expect": "clear" | "match", "via"})."""
    single = out_dir / "probes.jsonl"
    batch = out_dir / "probe-subjects.jsonl"
    expect = out_dir / "probes-expect.jsonl"
    with (
        single.open("w", encoding="utf-8") as fs,
        batch.open("w", encoding="utf-8") as fb,
        expect.open("w", encoding="utf-8") as fx,
    ):
        for number, p in enumerate(probes, start=1):
            fs.write(json.dumps(p.check_body(number), ensure_ascii=False, separators=(",", ":")) + "\n")
            fb.write(json.dumps(p.batch_subject(), ensure_ascii=False, separators=(",", ":")) + "\n")
            fx.write(json.dumps({"expect": p.expect, "via": p.via}) + "\n")
    return single, batch


# --- a data set on disk ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dataset:
    root: Path
    seed: int
    n: int
    today: dt.date
    entries: int
    persons: int
    in_effect: int
    probes: int

    @property
    def entry_files(self) -> list[Path]:
        return [self.root / "entries.tsv"]

    @property
    def person_files(self) -> list[Path]:
        return [self.root / "persons.tsv"]

    @property
    def pages_dir(self) -> Path:
        return self.root / "pages"

    @property
    def probes_file(self) -> Path:
        return self.root / "probes.jsonl"

    @property
    def probe_subjects_file(self) -> Path:
        return self.root / "probe-subjects.jsonl"


def _render_chunk(args: tuple[int, int, int, str, str]) -> tuple[bytes, bytes, int, int]:
    """Worker: one chunk as (entries TSV, persons TSV, persons, in effect); writes its upstream pages."""
    seed, chunk, n, today_iso, pages_dir = args
    today = dt.date.fromisoformat(today_iso)
    records = generate_chunk(seed, chunk, n, today)
    entries = "".join(entry_tsv(e, today) for e in records)
    persons = "".join(person_tsv(e) for e in records)
    for k in range(0, len(records), PAGE_SIZE):
        page = records[k : k + PAGE_SIZE]
        body = json.dumps([upstream_record(e) for e in page], ensure_ascii=False, separators=(",", ":"))
        page_path(Path(pages_dir), page[0].index // PAGE_SIZE).write_text(body, encoding="utf-8")
    n_persons = sum(len(e.linked_persons) for e in records)
    n_effect = sum(1 for e in records if e.in_effect(today))
    return entries.encode(), persons.encode(), n_persons, n_effect


def dataset_dir(base: Path, seed: int, n: int, today: dt.date) -> Path:
    return base / f"v{GENERATOR_VERSION}-seed{seed}-n{n}-{today.isoformat()}"


def load_dataset(root: Path) -> Dataset | None:
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    return Dataset(
        root=root,
        seed=data["seed"],
        n=data["n"],
        today=dt.date.fromisoformat(data["today"]),
        entries=data["entries"],
        persons=data["persons"],
        in_effect=data["in_effect"],
        probes=data["probes"],
    )


def write_dataset(
    base: Path, seed: int, n: int, today: dt.date, *, probes: int = 50_000, processes: int = 1
) -> Dataset:
    """Write (or reuse) the data set for (seed, n, today): entries.tsv, persons.tsv, pages/, probes."""
    root = dataset_dir(base, seed, n, today)
    existing = load_dataset(root)
    if existing is not None and existing.probes == probes:
        return existing
    pages = root / "pages"
    pages.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, c, n, today.isoformat(), str(pages)) for c in range(chunk_count(n))]
    n_persons = n_effect = 0
    with (root / "entries.tsv").open("wb") as fe, (root / "persons.tsv").open("wb") as fp:
        if processes > 1:
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                for entries, persons, np_, ne in pool.imap(_render_chunk, jobs, chunksize=1):
                    fe.write(entries)
                    fp.write(persons)
                    n_persons += np_
                    n_effect += ne
        else:
            for job in jobs:
                entries, persons, np_, ne = _render_chunk(job)
                fe.write(entries)
                fp.write(persons)
                n_persons += np_
                n_effect += ne
    write_probes(make_probes(seed, n, today, probes), root)
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "today": today.isoformat(),
        "entries": n,
        "persons": n_persons,
        "in_effect": n_effect,
        "probes": probes,
        "page_size": PAGE_SIZE,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    dataset = load_dataset(root)
    assert dataset is not None
    return dataset


# --- synthetic checks (statistics benchmark) ------------------------------------------------------------


@dataclasses.dataclass
class CheckRows:
    checks: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    matches: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    measures: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)


CHECK_COLUMNS = (
    "check_id", "checked_at", "check_date", "client_id", "department", "item_code", "item_department",
    "subject_code", "subject_kind", "subject_hmac", "operator", "business_ref", "batch_id", "request_hash",
    "outcome", "match_count", "entry_ids", "measure_codes", "suspended_codes", "withheld_codes",
    "lists_version", "catalogue_version", "feedback_due_on", "response",
)  # fmt: skip
MATCH_COLUMNS = (
    "check_id", "checked_at", "entry_id", "list_type", "list_kind", "issuing_department", "via",
    "matched_code", "matched_role", "entry_status",
)  # fmt: skip
MEASURE_COLUMNS = (
    "check_id", "checked_at", "measure_code", "disposition", "kind", "mandatory", "target", "triggered_by",
    "list_types",
)  # fmt: skip


# check-api writes each check's feedback summary in the statement that stores the check; rows COPYed straight
# into `checks` get theirs here, from their matches, once those are loaded.
SUMMARIES_SQL = """
INSERT INTO check_feedback (check_id, checked_at, check_date, department, item_code, match_count, list_types,
                            required_count, complete, feedback_due_on)
SELECT c.check_id, c.checked_at, c.check_date, c.department, c.item_code, c.match_count,
       coalesce(m.list_types, '{}'), cardinality(c.measure_codes), cardinality(c.measure_codes) = 0,
       c.feedback_due_on
FROM checks c
JOIN unnest($1::uuid[], $2::timestamptz[]) AS k(check_id, checked_at)
  ON c.check_id = k.check_id AND c.checked_at = k.checked_at
LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT cm.list_type ORDER BY cm.list_type) AS list_types
    FROM check_matches cm WHERE cm.check_id = c.check_id
) m ON true
ON CONFLICT (check_id) DO NOTHING
"""


async def write_summaries(conn: Any, checks: Sequence[tuple[Any, ...]]) -> None:
    """The feedback summaries of COPYed `checks` rows (check_id and checked_at first, as in CHECK_COLUMNS)."""
    await conn.execute(SUMMARIES_SQL, [c[0] for c in checks], [c[1] for c in checks])


def _uuid7(rng: random.Random, at: dt.datetime) -> uuid.UUID:
    millis = int(at.timestamp() * 1000)
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64
    value |= 0b10 << 62 | rng.getrandbits(62)
    return uuid.UUID(int=value)


def synthetic_checks(
    seed: int,
    count: int,
    *,
    client_id: uuid.UUID,
    department: str,
    catalogue: dict[str, Any],
    today: dt.date,
    days: int = 90,
    batch: int = 20_000,
) -> Iterator[CheckRows]:
    """`count` checks spread over the last `days` days, 10 % with matches, in batches of rows per table.

    Rows for `checks`, `check_matches` and `check_measures`, as check-api stores them; load them, then
    `write_summaries` for the feedback summaries check-api writes alongside. Matched checks carry the measures the catalogue maps for (item, list type) to `entity`. Half the
    checks are this client's (department `department`); the rest belong to other departments.
    """
    rng = random.Random(f"onecheck-bench-checks:{seed}:{count}")
    items = {i["code"]: i for i in catalogue["items"]}
    lt_kind = {lt["code"]: lt["kind"] for lt in catalogue["list_types"]}
    measures = {m["code"]: m for m in catalogue["measures"]}
    mapped: dict[str, dict[str, list[str]]] = {}
    for m in catalogue["mappings"]:
        entity = [mm["measure"] for mm in m["measures"] if "entity" in mm["targets"]]
        mapped.setdefault(m["item"], {})[m["list_type"]] = entity
    item_codes = sorted(items)
    others = [
        f"{city}{dep}" for city in ("江门市", "佛山市") for dep in ("住房和城乡建设局", "市场监督管理局")
    ]
    now = dt.datetime.combine(today, dt.time(0, 0), dt.timezone(dt.timedelta(hours=8)))  # start of today
    rows = CheckRows()
    for k in range(count):
        at = now - dt.timedelta(seconds=rng.randint(0, days * 86400))
        check_id = _uuid7(rng, at)
        item = items[rng.choice(item_codes)]
        ours = rng.random() < 0.5
        owner, dep = (
            (client_id, department) if ours else (uuid.UUID(int=k + 1, version=4), rng.choice(others))
        )
        code = make_uscc(CLEAR_ORG_BASE + 10_000_000 + k, "91", rng.choice(REGIONS))
        entry_ids: list[uuid.UUID] = []
        codes: list[str] = []
        withheld: list[str] = []
        matches_json: list[dict[str, Any]] = []
        measures_json: list[dict[str, Any]] = []
        if rng.random() < 0.1 and item["code"] in mapped:
            lt = rng.choice(sorted(mapped[item["code"]]))
            entry_id = _uuid4(rng)
            entry_ids.append(entry_id)
            issuing = f"江门市{lt}发布部门"
            rows.matches.append(
                (check_id, at, entry_id, lt, lt_kind[lt], issuing, "subject", code, None, "active")
            )
            matches_json.append({"entry_id": str(entry_id), "via": "subject", "list": {"code": lt}})
            for mc in mapped[item["code"]][lt]:
                m = measures[mc]
                if m["kind"] == "incentive" and lt_kind[lt] == "black":
                    withheld.append(mc)
                    disposition = "withheld"
                else:
                    codes.append(mc)
                    disposition = "required"
                    measures_json.append(
                        {"code": mc, "kind": m["kind"], "mandatory": bool(m.get("mandatory", True))}
                    )
                rows.measures.append(
                    (
                        check_id,
                        at,
                        mc,
                        disposition,
                        m["kind"],
                        bool(m.get("mandatory", True)),
                        "entity",
                        [entry_id],
                        [lt],
                    )
                )
        kinds = {measures[c]["kind"] for c in codes}
        outcome = (
            "clear" if not entry_ids else "review" if not kinds else "mixed" if len(kinds) == 2 else
            "penalty" if "penalty" in kinds else "incentive"
        )  # fmt: skip
        check_date = business_date(at)
        due = check_date + dt.timedelta(days=30) if codes else None
        response = {
            "check_id": str(check_id),
            "checked_at": at.isoformat(),
            "item": {"code": item["code"], "name": item["name"], "department": item["department"]},
            "subject": {"code": code, "given_code": code, "kind": "uscc", "name": "某某有限公司"},
            "outcome": outcome,
            "matches": matches_json,
            "measures": measures_json,
            "suspended_measures": [],
            "withheld_incentives": [{"code": c} for c in withheld],
            "clean_record_years": 0 if entry_ids else 3,
            "data_version": {"lists": "1", "catalogue": "1"},
            "feedback_due_on": due.isoformat() if due else None,
        }
        rows.checks.append(
            (
                check_id, at, check_date, owner, dep, item["code"], item["department"], code, "uscc", None,
                OPERATOR, f"SYN-{k:08d}", None, f"{rng.getrandbits(128):032x}", outcome, len(entry_ids),
                entry_ids, codes, [], withheld, 1, 1, due,
                json.dumps(response, ensure_ascii=False, separators=(",", ":")),
            )
        )  # fmt: skip
        if len(rows.checks) >= batch:
            yield rows
            rows = CheckRows()
    if rows.checks:
        yield rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, required=True, help="number of list entries")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/data"))
    parser.add_argument("--probes", type=int, default=50_000)
    parser.add_argument("--processes", type=int, default=max(1, multiprocessing.cpu_count()))
    args = parser.parse_args(argv)
    ds = write_dataset(
        args.out, args.seed, args.n, business_date(), probes=args.probes, processes=args.processes
    )
    print(json.dumps(dataclasses.asdict(ds), default=str, indent=1))


if __name__ == "__main__":
    main()
