"""relance: two-step WhatsApp campaigns that finish by themselves."""

__version__ = "0.1.0"
