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
from relance.models.contacts import Category, Contact, ContactOptChange, contact_categories
from relance.models.events import InboundEvent
from relance.models.heartbeats import Heartbeat
from relance.models.metrics import MetricSample
from relance.models.pacing import SenderPacing

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
    "SenderPacing",
    "User",
    "UserSession",
    "campaign_categories",
    "campaign_contacts",
    "contact_categories",
    "utcnow",
]
