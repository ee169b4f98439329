"""The tables, one module per aggregate; importing this registers them all."""

from relance.models.auth import ApiKey, AuditEvent, LoginThrottle, User, UserSession
from relance.models.base import Base, utcnow
from relance.models.campaigns import (
    Campaign,
    Message,
    Recipient,
    campaign_categories,
    campaign_contacts,
)
from relance.models.contacts import (
    Category,
    Contact,
    ContactOptChange,
    SuppressedPhone,
    contact_categories,
)
from relance.models.events import InboundEvent
from relance.models.heartbeats import Heartbeat
from relance.models.inbox import WebhookInbox
from relance.models.metrics import MetricSample
from relance.models.pacing import SenderPacing
from relance.models.senders import Sender, campaign_senders

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "Campaign",
    "Category",
    "Contact",
    "ContactOptChange",
    "Heartbeat",
    "InboundEvent",
    "LoginThrottle",
    "Message",
    "MetricSample",
    "Recipient",
    "Sender",
    "SenderPacing",
    "SuppressedPhone",
    "User",
    "UserSession",
    "WebhookInbox",
    "campaign_categories",
    "campaign_contacts",
    "campaign_senders",
    "contact_categories",
    "utcnow",
]
