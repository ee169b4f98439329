"""The metrics recorder without a server: buckets, labels, and a flush the database refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relance.config import load_settings
from relance.metrics.recorder import (
    LATENCY_BUCKETS,
    PROVIDER_LATENCY,
    SENDS,
    Recorder,
    bucket_of,
    labels_key,
)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_a_value_lands_in_the_smallest_bucket_that_holds_it(value: float) -> None:
    bound = bucket_of(LATENCY_BUCKETS, value)
    if bound == "+Inf":
        assert value > LATENCY_BUCKETS[-1]
    else:
        assert value <= float(bound)
        smaller = [b for b in LATENCY_BUCKETS if b < float(bound)]
        assert not smaller or value > smaller[-1]


def test_the_same_labels_in_any_order_are_one_series() -> None:
    assert labels_key({"a": "1", "b": "2"}) == labels_key({"b": "2", "a": "1"})


def test_a_metric_takes_exactly_its_labels() -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match="relance_sends"):
        recorder.inc(SENDS, provider="meta")
    recorder.observe(PROVIDER_LATENCY, 0.02, provider="meta")
    pending = recorder.pending()
    assert pending[("relance_provider_latency_seconds_count", labels_key({"provider": "meta"}))]
    bucket = labels_key({"provider": "meta", "le": "0.025"})
    assert pending[("relance_provider_latency_seconds_bucket", bucket)] == 1


def test_counts_a_flush_could_not_save_are_kept_for_the_next(tmp_path: object) -> None:
    recorder = Recorder()
    recorder.inc(SENDS, 2, provider="meta", sender="s", kind="message_1", outcome="sent")
    before = recorder.pending()
    # A database that does not exist (no migrated table): the flush fails, nothing is lost.
    recorder.flush(load_settings(DATABASE_URL="sqlite:///" + str(tmp_path) + "/missing.db"))
    recorder.inc(SENDS, 1, provider="meta", sender="s", kind="message_1", outcome="sent")
    (key,) = before
    assert recorder.pending() == {key: 3.0}
