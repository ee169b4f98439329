"""Metric counters summed across every process (``relance.metrics``): one row per series."""

from __future__ import annotations

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from relance.models.base import Base


class MetricSample(Base):
    __tablename__ = "metric_samples"

    # A series: its sample name (``relance_sends_total``, ``..._bucket``) and its labels as
    # sorted JSON. Processes add their increments to ``value``; nothing ever decreases it.
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    labels: Mapped[str] = mapped_column(String(500), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)
