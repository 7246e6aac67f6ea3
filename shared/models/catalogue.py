"""The measure catalogue: memoranda, list types, measures, items and the item ↔ list type ↔ measure mapping.

Each import or demo load bumps `catalogue_versions`; processes cache the catalogue and reload it when the
version changes.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    ARRAY,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Integer,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, created_at_column


class Memorandum(Base):
    """合作备忘录: a national cooperation memorandum defining measures for list types."""

    __tablename__ = "memoranda"

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    doc_no: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # incentive | penalty
    list_types: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")


class ListType(Base):
    """名单类型: one named red / black / watch list."""

    __tablename__ = "list_types"
    __table_args__ = (CheckConstraint("kind IN ('red', 'black', 'watch')", name="kind"),)

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    issuing_authority: Mapped[str] = mapped_column(Text)
    default_validity_days: Mapped[int | None] = mapped_column(Integer)  # null: open-ended
    removal_rule: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str | None] = mapped_column(Text)


class Measure(Base):
    """奖惩措施: one incentive or penalty with its legal basis."""

    __tablename__ = "measures"
    __table_args__ = (CheckConstraint("kind IN ('incentive', 'penalty')", name="kind"),)

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text)
    nature: Mapped[str | None] = mapped_column(Text)
    mandatory: Mapped[bool] = mapped_column(Boolean, server_default="true")
    content: Mapped[str] = mapped_column(Text)
    # Which targets the measure can reach at all: entity / responsible_person / natural_person.
    targets: Mapped[list[str]] = mapped_column(ARRAY(Text))
    implementing_department: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    basis_level: Mapped[str | None] = mapped_column(Text)
    memorandum: Mapped[str | None] = mapped_column(ForeignKey("memoranda.code"))


class Item(Base):
    """权责事项: one approval or public-service matter of a department."""

    __tablename__ = "items"

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    department: Mapped[str] = mapped_column(Text, index=True)
    section: Mapped[str | None] = mapped_column(Text)
    system: Mapped[str | None] = mapped_column(Text)


class ItemMapping(Base):
    """应用事项清单 row: for this item and list type, apply this measure to these targets."""

    __tablename__ = "item_mappings"

    item_code: Mapped[str] = mapped_column(ForeignKey("items.code", ondelete="CASCADE"), primary_key=True)
    list_type: Mapped[str] = mapped_column(ForeignKey("list_types.code"), primary_key=True)
    measure_code: Mapped[str] = mapped_column(ForeignKey("measures.code"), primary_key=True)
    targets: Mapped[list[str]] = mapped_column(ARRAY(Text))


class CatalogueVersion(Base):
    __tablename__ = "catalogue_versions"

    version: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    source: Mapped[str] = mapped_column(Text)  # demo | import
    note: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(Text)
