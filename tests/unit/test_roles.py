"""The one permission table, its order of roles, keys capped by their owner, the throttle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from relance.accounts import throttle
from relance.accounts.roles import ROLE_PERMISSIONS, Permission, Role, at_most, can, effective

roles = st.sampled_from(list(Role))
permissions = st.sampled_from(list(Permission))
ORDER = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]


def test_the_table_says_what_the_issue_says() -> None:
    P = Permission
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    operator = {P.MANAGE_CONTACTS, P.MANAGE_CAMPAIGNS, P.RUN_CAMPAIGNS, P.READ, P.EXPORT}
    assert operator <= ROLE_PERMISSIONS[Role.OPERATOR]
    for admin_only in (P.MANAGE_USERS, P.MANAGE_SENDERS, P.MANAGE_KEYS, P.READ_AUDIT):
        assert not can(Role.OPERATOR, admin_only)
        assert not can(Role.VIEWER, admin_only)
    assert ROLE_PERMISSIONS[Role.VIEWER] == {P.READ, P.EXPORT, P.OWN_KEYS}


@given(roles, roles, permissions)
def test_a_higher_role_can_do_everything_a_lower_one_can(
    low: Role, high: Role, permission: Permission
) -> None:
    if at_most(low, high) and can(low, permission):
        assert can(high, permission)


@given(roles, roles, permissions)
def test_a_key_never_does_more_than_its_role_nor_its_owner(
    key: Role, owner: Role, permission: Permission
) -> None:
    acting = effective(key, owner)
    assert at_most(acting, key) and at_most(acting, owner)
    assert acting in (key, owner)
    if can(acting, permission):
        assert can(key, permission) and can(owner, permission)


@given(roles, roles)
def test_at_most_is_the_order_viewer_operator_admin(a: Role, b: Role) -> None:
    assert at_most(a, b) == (ORDER.index(a) <= ORDER.index(b))


@given(st.integers(0, 10_000), st.integers(0, 10**7))
def test_the_throttle_never_locks_out_for_longer_than_its_cap(failures: int, seconds: int) -> None:
    last = datetime(2026, 1, 1, tzinfo=UTC)
    now = last + timedelta(seconds=seconds)
    at = throttle.retry_at(failures, last, now)
    if failures < throttle.FREE_FAILURES:
        assert at is None  # a few typos cost nothing
    if at is not None:
        assert now < at <= last + throttle.MAX_WAIT
    if now >= last + throttle.MAX_WAIT:
        assert at is None


@given(st.integers(throttle.FREE_FAILURES, 200))
def test_each_failure_past_the_free_ones_waits_at_least_as_long(failures: int) -> None:
    assert throttle.wait_after(failures + 1) >= throttle.wait_after(failures) > timedelta(0)
