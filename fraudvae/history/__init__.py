"""Transactions in context: each row's features from its entities' (card's, customer's, terminal's)
strictly earlier transactions (`derive`), with labels their frauds known before it (`risk`), a
bounded state per entity (`HistoryState`) saved with the model, and what the features are
(`HistorySpec`); labels posted to a service (`labels`); the service's shared state stores (`store`:
embedded SQLite, with its `checkpoint` thread; `redis_store`), which keep states in their JSON form
(`stored`). Imported by fitting and scoring; imports neither."""

from fraudvae.history.features import derive, seconds
from fraudvae.history.spec import HistorySpec, amount_prior, find_amount_column, parse_window, window_label
from fraudvae.history.state import EntityState, EntityTable, HistoryState

__all__ = ["EntityState", "EntityTable", "HistorySpec", "HistoryState", "amount_prior", "derive",
           "find_amount_column", "parse_window", "seconds", "window_label"]
