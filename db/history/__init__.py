"""Position history and delivery event log (MongoDB in production, SQL tables as the embedded default)."""

from db.history.base import DeliveryEvent, HistoryStore, Position
from db.history.factory import create_history_store
from db.history.mongo import MongoHistoryStore
from db.history.sql import SqlHistoryStore

__all__ = [
    "DeliveryEvent",
    "HistoryStore",
    "MongoHistoryStore",
    "Position",
    "SqlHistoryStore",
    "create_history_store",
]
