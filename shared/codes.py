"""Subject codes: parse, validate, normalise and mask the identifiers a credit subject is known by.

Standards: GB 32100-2015 (统一社会信用代码, USCC, MOD 31 check), GB 11714-1997 (组织机构代码, the organisation
code embedded in a USCC at positions 9-17), GB 11643-1999 (公民身份号码, ISO 7064 MOD 11-2, plus the 15-digit
legacy form) and the GS 15-2006 工商注册号 (ISO 7064 MOD 11,10).

We do not validate with python-stdnum (DOMAIN.md §1.5): ``stdnum.cn.uscc`` ignores the embedded GB 11714
check character and rejects valid codes whose registration authority is a letter (``N2…``, ``Y1…``), and
``stdnum.cn.ric`` rejects 15-digit legacy numbers and residence permits, accepts future birth dates and
rejects real numbers through its historical region table. The tests use it as a cross-check where it is right.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
import operator
import unicodedata
import zoneinfo
from dataclasses import dataclass

__all__ = [
    "AmbiguousSubjectCode",
    "SubjectCode",
    "SubjectCodeError",
    "SubjectKind",
    "citizen_id_15_to_18",
    "citizen_id_check_char",
    "fast_normalise",
    "mask_citizen_id",
    "mask_code",
    "mask_name",
    "normalise",
    "normalise_by_rules",
    "org_code_check_char",
    "pii_hmac",
    "registration_no_check_digit",
    "uscc_check_char",
]


class SubjectKind(enum.StrEnum):
    USCC = "uscc"
    CITIZEN_ID = "citizen_id"
    ORG_CODE = "org_code"
    REGISTRATION_NO = "registration_no"


@dataclass(frozen=True, slots=True)
class SubjectCode:
    """A validated subject code.

    ``code`` is the normalised form (uppercase, no spaces or hyphen; citizen IDs always 18 characters);
    ``given`` is exactly what the caller sent. ``org_code`` is the GB 11714 code a USCC embeds (or the org
    code itself), the key for matching entries recorded under the old identifier. ``warnings`` hold
    soft-rule findings that do not make the code invalid.
    """

    code: str
    kind: SubjectKind
    given: str
    org_code: str | None
    warnings: tuple[str, ...] = ()

    @property
    def is_natural_person(self) -> bool:
        return self.kind == SubjectKind.CITIZEN_ID


class SubjectCodeError(ValueError):
    """A code failing the rules of its kind; ``rule`` names the failed rule (``uscc.check_char``, …)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message

    def __str__(self) -> str:
        return self.message

    # Exceptions are pickled across worker processes; the default would call __init__ with args=(message,).
    def __reduce__(self) -> tuple[type[SubjectCodeError], tuple[str, str]]:
        return (type(self), (self.rule, self.message))


class AmbiguousSubjectCode(ValueError):
    """An 18-character code that passes the rules of more than one kind; the caller must say which."""

    def __init__(self, code: str, kinds: tuple[SubjectKind, ...]) -> None:
        # The message leaves the code out: it may be a citizen ID, and exception text ends up in logs.
        message = (
            f"the code is valid as more than one kind ({', '.join(kinds)}); "
            "give the kind to say which one is meant"
        )
        super().__init__(message)
        self.code = code
        self.kinds = kinds
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[AmbiguousSubjectCode], tuple[str, tuple[SubjectKind, ...]]]:
        return (type(self), (self.code, self.kinds))


# --- alphabets, weights and tables -----------------------------------------------------------------------

_DIGITS = frozenset("0123456789")
# GB 32100: 31 characters, I O Z S V never used; a character's value is its index.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {c: i for i, c in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)  # 3**(i-1) mod 31

# GB 11714: the body uses the full Latin alphabet (A=10 … Z=35), unlike the USCC.
_ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ORG_VALUES = {c: i for i, c in enumerate(_ORG_ALPHABET)}
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

_CITIZEN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)  # 2**(18-i) mod 11
_CITIZEN_CHECK = "10X98765432"

# GB 32100 表2 as third-party sources agree on it (DOMAIN.md §1.2). The table has been amended and the
# sources disagree, so an unknown pair is only a warning.
_USCC_AUTHORITY_TYPES: dict[str, frozenset[str]] = {
    "1": frozenset("1239"),
    "2": frozenset("19"),
    "3": frozenset("123459"),
    "4": frozenset("19"),
    "5": frozenset("1239"),
    "6": frozenset("129"),
    "7": frozenset("129"),
    "8": frozenset("19"),
    "9": frozenset("123"),
    "A": frozenset("19"),
    "N": frozenset("1239"),
    "Y": frozenset("1"),
}

# Province-level prefixes of GB/T 2260 plus 71 台湾, 81/82/83 港澳台 residence permits; 9x (foreign
# permanent residence) is handled separately. Soft rule: addresses are historical and tables drift.
_PROVINCE_PREFIXES = frozenset(
    str(n)
    for n in (*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55), *range(61, 66))
).union({"71", "81", "82", "83"})

# Common compound surnames: masking keeps both characters of these.
# fmt: off
_COMPOUND_SURNAMES = frozenset((
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒", "夏侯",
    "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "百里", "呼延", "澹台", "公冶", "太史", "申屠",
))
# fmt: on

try:
    _SHANGHAI: datetime.tzinfo = zoneinfo.ZoneInfo("Asia/Shanghai")
except zoneinfo.ZoneInfoNotFoundError:  # pragma: no cover - minimal images without tzdata
    # China has had no daylight saving time since 1991, so a fixed offset gives the same dates.
    _SHANGHAI = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")


def _is_digits(s: str) -> bool:
    # str.isdigit() also accepts other scripts' digits (e.g. Arabic-Indic) that NFKC leaves alone.
    return bool(s) and all(c in _DIGITS for c in s)


# --- check characters ----------------------------------------------------------------------------------


def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character (position 18) for the first 17 characters of a USCC."""
    if len(first17) != 17 or any(c not in _USCC_VALUES for c in first17):
        raise ValueError("expected 17 characters of the USCC alphabet")
    total = sum(_USCC_VALUES[c] * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    # 31 - (S mod 31) is 31 when S is a multiple of 31: that folds to '0' (codes ending in '0' exist).
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(body8: str) -> str:
    """The GB 11714 check character for an 8-character organisation-code body."""
    if len(body8) != 8 or any(c not in _ORG_VALUES for c in body8):
        raise ValueError("expected 8 characters of 0-9 and A-Z")
    total = sum(_ORG_VALUES[c] * w for c, w in zip(body8, _ORG_WEIGHTS, strict=True))
    c9 = 11 - total % 11
    if c9 == 10:
        return "X"
    if c9 == 11:
        return "0"
    return str(c9)


def citizen_id_check_char(first17: str) -> str:
    """The GB 11643 check character (ISO 7064 MOD 11-2: a digit or 'X') for the first 17 digits."""
    if len(first17) != 17 or not _is_digits(first17):
        raise ValueError("expected 17 digits")
    total = sum(int(c) * w for c, w in zip(first17, _CITIZEN_WEIGHTS, strict=True))
    return _CITIZEN_CHECK[total % 11]


def registration_no_check_digit(first14: str) -> str:
    """The 工商注册号 check digit (ISO 7064 MOD 11,10) for the first 14 digits."""
    if len(first14) != 14 or not _is_digits(first14):
        raise ValueError("expected 14 digits")
    product = 10
    for c in first14:
        remainder = (product + int(c)) % 10 or 10
        product = remainder * 2 % 11
    return str((11 - product) % 10)


def citizen_id_15_to_18(code15: str) -> str:
    """Convert a 15-digit legacy ID (address, YYMMDD, sequence) to 18 digits (all were born in the 1900s)."""
    if len(code15) != 15 or not _is_digits(code15):
        raise ValueError("expected 15 digits")
    first17 = code15[:6] + "19" + code15[6:]
    return first17 + citizen_id_check_char(first17)


# --- masking and pseudonymisation ------------------------------------------------------------------------


def mask_citizen_id(code: str) -> str:
    """First 6 and last 4 characters kept, the rest '*': '440703********1234'."""
    if len(code) <= 10:
        # Too short to hide anything between the kept ends: hide it all.
        return "*" * len(code)
    return code[:6] + "*" * (len(code) - 10) + code[-4:]


def mask_name(name: str) -> str:
    """A natural person's name as surname plus '*': '张三' -> '张*', '欧阳修' -> '欧阳*'."""
    name = name.strip()
    if not name:
        return ""
    # A compound surname needs at least one character of given name after it ('欧阳' alone is 欧 + 阳).
    if len(name) > 2 and name[:2] in _COMPOUND_SURNAMES:
        return name[:2] + "*"
    return name[0] + "*"


def mask_code(code: str, kind: SubjectKind | str) -> str:
    """Citizen IDs masked; USCCs, org codes and registration numbers returned as they are."""
    if kind in (SubjectKind.USCC, SubjectKind.ORG_CODE, SubjectKind.REGISTRATION_NO):
        return code
    # Citizen IDs and, failing closed, any kind we do not know.
    return mask_citizen_id(code)


def pii_hmac(value: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of ``value``: correlates a personal ID in logs and lookups without storing it.

    Hash the normalised code so that every spelling of one ID gives the same digest.
    """
    if not key:
        # Citizen IDs are few enough to enumerate: without a secret key the digest is reversible.
        raise ValueError("pii_hmac needs a non-empty secret key")
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


# --- validation per kind -------------------------------------------------------------------------------


def _uscc_warnings(code: str) -> tuple[str, ...]:
    if code[1] not in _USCC_AUTHORITY_TYPES.get(code[0], frozenset()):
        return (
            f"uscc.authority_type: registration authority/type {code[:2]!r} is not in the GB 32100 table",
        )
    return ()


def _citizen_warnings(code: str) -> tuple[str, ...]:
    if code[0] != "9" and code[:2] not in _PROVINCE_PREFIXES:
        return (f"citizen_id.province: {code[:2]!r} is not a known province-level prefix",)
    return ()


_WARNINGS = {SubjectKind.USCC: _uscc_warnings, SubjectKind.CITIZEN_ID: _citizen_warnings}


def _uscc(code: str, given: str) -> SubjectCode:
    if len(code) != 18:
        raise SubjectCodeError("uscc.length", f"a USCC has 18 characters, got {len(code)}")
    for pos, c in enumerate(code, start=1):
        if c not in _USCC_VALUES:
            raise SubjectCodeError(
                "uscc.alphabet",
                f"character {c!r} at position {pos} is not in the USCC alphabet "
                "(digits and A-Y without I, O, S, V, Z)",
            )
    region = code[2:8]
    if not _is_digits(region):
        raise SubjectCodeError(
            "uscc.region", f"positions 3-8 (administrative division) must be digits, got {region!r}"
        )
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        raise SubjectCodeError("uscc.check_char", f"check character should be {expected!r}, got {code[17]!r}")
    expected_org = org_code_check_char(code[8:16])
    if code[16] != expected_org:
        raise SubjectCodeError(
            "uscc.org_check_char",
            f"embedded organisation code check character (position 17) should be {expected_org!r}, "
            f"got {code[16]!r}",
        )
    return SubjectCode(
        code=code, kind=SubjectKind.USCC, given=given, org_code=code[8:17], warnings=_uscc_warnings(code)
    )


def _org_code(code: str, given: str) -> SubjectCode:
    if (
        len(code) != 9
        or any(c not in _ORG_VALUES for c in code[:8])
        or not (_is_digits(code[8]) or code[8] == "X")
    ):
        raise SubjectCodeError(
            "org_code.format",
            "an organisation code is 8 characters of 0-9 and A-Z and a check digit or 'X' "
            f"(optionally written XXXXXXXX-X), got {len(code)} characters",
        )
    expected = org_code_check_char(code[:8])
    if code[8] != expected:
        raise SubjectCodeError(
            "org_code.check_char", f"check character should be {expected!r}, got {code[8]!r}"
        )
    return SubjectCode(code=code, kind=SubjectKind.ORG_CODE, given=given, org_code=code)


def _birth_date(digits: str) -> datetime.date | None:
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def _citizen_id(code: str, given: str, today: datetime.date) -> SubjectCode:
    legacy = len(code) == 15 and _is_digits(code)
    if legacy:
        # The legacy form has no check character; its date is the only thing to validate.
        if _birth_date("19" + code[6:12]) is None:
            raise SubjectCodeError(
                "citizen_id.birth_date",
                f"birth date {code[6:12]!r} (YYMMDD, positions 7-12 of the legacy number) is not a real date",
            )
        code = citizen_id_15_to_18(code)
    elif len(code) != 18 or not _is_digits(code[:17]) or not (_is_digits(code[17]) or code[17] == "X"):
        raise SubjectCodeError(
            "citizen_id.format",
            "a citizen ID is 17 digits and a check digit or 'X' (or 15 digits in the legacy form), "
            f"got {len(code)} characters",
        )
    else:
        expected = citizen_id_check_char(code[:17])
        if code[17] != expected:
            raise SubjectCodeError(
                "citizen_id.check_char", f"check character should be {expected!r}, got {code[17]!r}"
            )
        if _birth_date(code[6:14]) is None:
            raise SubjectCodeError(
                "citizen_id.birth_date", f"birth date {code[6:14]!r} (positions 7-14) is not a real date"
            )
    born = _birth_date(code[6:14])
    assert born is not None  # checked above, or converted from a checked legacy number
    if born > today:
        raise SubjectCodeError(
            "citizen_id.future_birth_date",
            f"birth date {born.isoformat()} is after today ({today.isoformat()})",
        )
    return SubjectCode(
        code=code, kind=SubjectKind.CITIZEN_ID, given=given, org_code=None, warnings=_citizen_warnings(code)
    )


def _registration_no(code: str, given: str) -> SubjectCode:
    if len(code) != 15 or not _is_digits(code):
        raise SubjectCodeError(
            "registration_no.format", f"a registration number is 15 digits, got {len(code)} characters"
        )
    expected = registration_no_check_digit(code[:14])
    if code[14] != expected:
        raise SubjectCodeError(
            "registration_no.check_digit", f"check digit should be {expected!r}, got {code[14]!r}"
        )
    return SubjectCode(code=code, kind=SubjectKind.REGISTRATION_NO, given=given, org_code=None)


# --- entry point ---------------------------------------------------------------------------------------

# Uppercase ASCII only: str.upper() would turn e.g. 'ı' into 'I' or 'ß' into 'SS' and let a non-ASCII
# character pass as a valid one; left alone, such characters fail the alphabet rules.
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def normalise(
    raw: str, kind: SubjectKind | str | None = None, *, today: datetime.date | None = None
) -> SubjectCode:
    """Validate ``raw`` and return its normalised form.

    With ``kind``, the code is checked against that kind only. Without it, the kind is the one whose
    rules the code passes. ``today`` (default: today in Asia/Shanghai) bounds citizen birth dates.
    Raises SubjectCodeError (with the failed rule) or AmbiguousSubjectCode.

    A plain ASCII code that passes its rules is answered by `fast_normalise` (every check and every synced
    record comes this way, ~6x faster); anything else by `normalise_by_rules`, which gives the same answer
    for those codes (tests/shared/test_codes.py holds them equal) and names the rule a bad code fails.
    """
    if kind is not None and not isinstance(kind, SubjectKind):
        kind = _kind(kind)
    if today is None:
        today = datetime.datetime.now(_SHANGHAI).date()
    elif isinstance(today, datetime.datetime):
        today = today.date()  # a datetime does not compare with a date
    fast = fast_normalise(raw, kind, today)
    if fast is not None:
        code, found, org_code = fast
        warn = _WARNINGS.get(found)
        return SubjectCode(code, found, raw, org_code, warn(code) if warn else ())
    return normalise_by_rules(raw, kind, today=today)


def _kind(kind: SubjectKind | str) -> SubjectKind:
    try:
        return SubjectKind(kind)
    except ValueError:
        raise SubjectCodeError(
            "kind.unknown",
            f"unknown subject code kind {str(kind)[:40]!r}; "
            f"expected one of {', '.join(k.value for k in SubjectKind)}",
        ) from None


def normalise_by_rules(
    raw: str, kind: SubjectKind | str | None = None, *, today: datetime.date | None = None
) -> SubjectCode:
    """`normalise`, rule by rule: NFKC, spaces, case and an org code's hyphen, then each rule of the kind in
    turn, so a failure names the rule it broke. The reference `fast_normalise` is held equal to."""
    if kind is not None:
        try:
            kind = SubjectKind(kind)
        except ValueError:
            raise SubjectCodeError(
                "kind.unknown",
                f"unknown subject code kind {str(kind)[:40]!r}; "
                f"expected one of {', '.join(k.value for k in SubjectKind)}",
            ) from None
    if today is None:
        today = datetime.datetime.now(_SHANGHAI).date()
    elif isinstance(today, datetime.datetime):
        today = today.date()  # a datetime does not compare with a date

    code = unicodedata.normalize("NFKC", raw).strip().translate(_ASCII_UPPER)
    if not code:
        raise SubjectCodeError("code.empty", "the subject code is empty")
    if "-" in code:
        # Only GB 11714's written form XXXXXXXX-X carries a hyphen.
        if (
            kind in (None, SubjectKind.ORG_CODE)
            and len(code) == 10
            and code.index("-") == 8
            and code.count("-") == 1
        ):
            code = code[:8] + code[9]
            kind = SubjectKind.ORG_CODE
        else:
            raise SubjectCodeError(
                "code.hyphen",
                "a hyphen is allowed only before the check character of an organisation code (XXXXXXXX-X)",
            )

    match kind:
        case SubjectKind.USCC:
            return _uscc(code, raw)
        case SubjectKind.CITIZEN_ID:
            return _citizen_id(code, raw, today)
        case SubjectKind.ORG_CODE:
            return _org_code(code, raw)
        case SubjectKind.REGISTRATION_NO:
            return _registration_no(code, raw)
        case None:
            return _detect(code, raw, today)


def _detect(code: str, given: str, today: datetime.date) -> SubjectCode:
    if len(code) == 18:
        as_uscc: SubjectCode | SubjectCodeError
        as_citizen: SubjectCode | SubjectCodeError
        try:
            as_uscc = _uscc(code, given)
        except SubjectCodeError as e:
            as_uscc = e
        try:
            as_citizen = _citizen_id(code, given, today)
        except SubjectCodeError as e:
            as_citizen = e
        if isinstance(as_uscc, SubjectCode) and isinstance(as_citizen, SubjectCode):
            raise AmbiguousSubjectCode(code, (SubjectKind.USCC, SubjectKind.CITIZEN_ID))
        if isinstance(as_uscc, SubjectCode):
            return as_uscc
        if isinstance(as_citizen, SubjectCode):
            return as_citizen
        # Neither: report the failure of the kind the code looks like.
        looks_like_citizen = _is_digits(code[:17]) and (_is_digits(code[17]) or code[17] == "X")
        raise as_citizen if looks_like_citizen else as_uscc
    if len(code) == 15:
        if not _is_digits(code):
            return _registration_no(code, given)  # raises registration_no.format
        expected = registration_no_check_digit(code[:14])
        if code[14] == expected:
            return _registration_no(code, given)
        try:
            return _citizen_id(code, given, today)
        except SubjectCodeError:
            raise SubjectCodeError(
                "registration_no.check_digit",
                f"check digit should be {expected!r}, got {code[14]!r} "
                "(and the code is no legacy citizen ID either: positions 7-12 are not a real birth date)",
            ) from None
    if len(code) == 9:
        return _org_code(code, given)
    raise SubjectCodeError(
        "code.length",
        "a subject code has 9 characters (org code, or 10 with its hyphen), 15 (registration number, "
        f"legacy citizen ID) or 18 (USCC, citizen ID), got {len(code)}",
    )


# --- fast path for bulk validation ---------------------------------------------------------------------
#
# List sync validates every code of a million-record snapshot. `fast_normalise` answers the common case — a
# plain ASCII code that passes every rule of its kind — with table lookups and C-level sums instead of
# `normalise`'s general path; whatever it is not sure of (anything to normalise first, a failure, a legacy
# 15-digit citizen id, an ambiguous code) it leaves to `normalise`. It adds no rule and drops none: when it
# answers, `normalise` gives the same code, kind and org code (tests/list_sync/test_fast_paths.py holds them
# equal); it skips only the soft-rule warnings, which bulk validation does not use.

_INVALID = 255
_USCC_TABLE = bytes(_USCC_VALUES.get(chr(b), _INVALID) for b in range(256))
_ORG_TABLE = bytes(_ORG_VALUES.get(chr(b), _INVALID) for b in range(256))
_DIGIT_TABLE = bytes(b - 48 if 48 <= b <= 57 else _INVALID for b in range(256))
_KINDS_BY_VALUE: dict[str | None, SubjectKind | None] = {k.value: k for k in SubjectKind}
_KINDS_BY_VALUE[None] = None
_birth_dates: dict[str, datetime.date | None] = {}  # YYYYMMDD -> the date, or None if not a real date


def _fast_birth_date(digits8: str) -> datetime.date | None:
    if digits8 in _birth_dates:
        return _birth_dates[digits8]
    born = _birth_date(digits8)
    if len(_birth_dates) < 200_000:  # ~73,000 real dates from year 1800 to 2000; bounded whatever comes
        _birth_dates[digits8] = born
    return born


# Check characters by weighted sum (no modulo per code): the largest sums are 30 x sum(weights) and so on.
_USCC_CHECKS = tuple(_USCC_ALPHABET[(31 - t % 31) % 31] for t in range(30 * sum(_USCC_WEIGHTS) + 1))
_ORG_CHECKS = tuple(
    "X" if 11 - t % 11 == 10 else "0" if 11 - t % 11 == 11 else str(11 - t % 11)
    for t in range(35 * sum(_ORG_WEIGHTS) + 1)
)
_ORG_WEIGHTS_IN_USCC = (0,) * 8 + _ORG_WEIGHTS  # positions 9-16 of a USCC
_CITIZEN_CHECKS = tuple(_CITIZEN_CHECK[t % 11] for t in range(9 * sum(_CITIZEN_WEIGHTS) + 1))


def _fast_uscc_ok(code: str) -> bool:
    """`code` (18 ASCII characters) passes every USCC rule of `_uscc`."""
    raw = code.encode("ascii")
    values = raw.translate(_USCC_TABLE)
    if _INVALID in values or not code[2:8].isdigit():  # alphabet; positions 3-8 digits (ASCII here)
        return False
    if _USCC_CHECKS[sum(map(operator.mul, values, _USCC_WEIGHTS))] != code[17]:  # the first 17
        return False
    org_check: str = _ORG_CHECKS[sum(map(operator.mul, raw.translate(_ORG_TABLE), _ORG_WEIGHTS_IN_USCC))]
    return org_check == code[16]


def _fast_citizen_ok(code: str, today: datetime.date) -> bool:
    """`code` (18 ASCII characters) passes every rule of `_citizen_id` (the 15-digit form is not handled)."""
    values = code.encode("ascii").translate(_DIGIT_TABLE)
    if _INVALID in values[:17] or code[17] not in "0123456789X":
        return False
    if _CITIZEN_CHECKS[sum(map(operator.mul, values, _CITIZEN_WEIGHTS))] != code[17]:  # the first 17
        return False
    born = _fast_birth_date(code[6:14])
    return born is not None and born <= today


def fast_normalise(
    raw: str, kind: SubjectKind | str | None, today: datetime.date
) -> tuple[str, SubjectKind, str | None] | None:
    """(code, kind, org_code) exactly as ``normalise(raw, kind, today=today)`` gives them when ``raw`` is a
    plain ASCII code (letters and digits only) that passes its rules; None otherwise: then call
    ``normalise``, which decides (and names the failed rule)."""
    if not (raw.isascii() and raw.isalnum()):  # spaces, hyphens, full-width forms: normalise first
        return None
    try:
        wanted = _KINDS_BY_VALUE[kind]
    except KeyError:
        return None
    code = raw.upper()  # ASCII only here, so the same as `_ASCII_UPPER`
    size = len(code)
    if size == 18:
        if wanted is SubjectKind.USCC:
            return (code, SubjectKind.USCC, code[8:17]) if _fast_uscc_ok(code) else None
        if wanted is SubjectKind.CITIZEN_ID:
            return (code, SubjectKind.CITIZEN_ID, None) if _fast_citizen_ok(code, today) else None
        if wanted is None:
            as_uscc, as_citizen = _fast_uscc_ok(code), _fast_citizen_ok(code, today)
            if as_uscc and not as_citizen:
                return code, SubjectKind.USCC, code[8:17]
            if as_citizen and not as_uscc:
                return code, SubjectKind.CITIZEN_ID, None
        return None  # invalid, ambiguous, or another kind's length: normalise says which
    if size == 9 and wanted in (None, SubjectKind.ORG_CODE):
        # ASCII letters and digits are all in the GB 11714 alphabet, so the check character is defined.
        if code[8] in "0123456789X" and code[8] == org_code_check_char(code[:8]):
            return code, SubjectKind.ORG_CODE, code
        return None
    if (
        size == 15
        and wanted in (None, SubjectKind.REGISTRATION_NO)
        and code.isdigit()
        and code[14] == registration_no_check_digit(code[:14])
    ):
        return code, SubjectKind.REGISTRATION_NO, None
    return None  # a legacy citizen id, another length, or invalid
