"""Alert delivery: the outbox worker and its senders (email, webhooks, Apprise).

Developments (and source-down/back notices) are written to the ``delivery`` outbox in the same
transaction that creates them (``monitor.store``); ``Deliverer`` claims due rows, renders them
(``message``), sends them through the channel's sender and records the outcome, retrying with
exponential backoff and jitter. See README "Alerts" for the guarantees.
"""

from monitor.alert.message import AlertMessage, DeliveryError
from monitor.alert.worker import Deliverer, DeliveryRunReport

__all__ = ["AlertMessage", "Deliverer", "DeliveryError", "DeliveryRunReport"]
