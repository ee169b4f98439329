"""Senders: the WhatsApp numbers relance sends from, their limits and their health."""
