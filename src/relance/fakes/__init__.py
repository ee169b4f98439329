"""Fakes of the providers' APIs, shared by the bench and the tests (never used in production)."""
