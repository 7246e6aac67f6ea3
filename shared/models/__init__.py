"""All tables of the shared OneCheck schema. Import this package to register them on `Base.metadata`."""

from shared.models.access import ApiClient, AuditLog, IdempotencyKey
from shared.models.catalogue import CatalogueVersion, Item, ItemMapping, ListType, Measure, Memorandum
from shared.models.checks import Check, CheckMatch, CheckMeasure
from shared.models.entries import EntryEvent, EntryPerson, ListEntry, SubjectAlias
from shared.models.feedback import CheckFeedback, FeedbackMeasure, FeedbackSubmission
from shared.models.outbox import OutboxMessage
from shared.models.sync import QuarantinedRecord, Subscription, SyncPage, SyncRun, SyncSource

__all__ = [
    "ApiClient",
    "AuditLog",
    "CatalogueVersion",
    "Check",
    "CheckFeedback",
    "CheckMatch",
    "CheckMeasure",
    "EntryEvent",
    "EntryPerson",
    "FeedbackMeasure",
    "FeedbackSubmission",
    "IdempotencyKey",
    "Item",
    "ItemMapping",
    "ListEntry",
    "ListType",
    "Measure",
    "Memorandum",
    "OutboxMessage",
    "QuarantinedRecord",
    "SubjectAlias",
    "Subscription",
    "SyncPage",
    "SyncRun",
    "SyncSource",
]
