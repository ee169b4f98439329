"""Which origins may send cookie-authenticated writes: the pure rule of relance.origins."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relance.origins import SAFE_METHODS, allowed_origins, cross_site_refusal, origin_of

HOSTS = st.sampled_from(["relance.example.com", "evil.example", "127.0.0.1", "localhost", "a.b"])
SCHEMES = st.sampled_from(["http", "https"])
PORTS = st.one_of(st.none(), st.integers(1, 65535))
UNSAFE = st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "post"])


def url(scheme: str, host: str, port: int | None, path: str = "") -> str:
    return f"{scheme}://{host}{f':{port}' if port else ''}{path}"


def test_origin_writes_the_default_port_and_ignores_case_and_path() -> None:
    assert origin_of("https://Relance.Example.com/x?y") == "https://relance.example.com:443"
    assert origin_of("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert origin_of("http://[::1]:8000/") == "http://[::1]:8000"
    for junk in (
        "null",
        "",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://",
        "http://x:99999",
    ):
        assert origin_of(junk) is None, junk


@given(SCHEMES, HOSTS, PORTS, st.text(max_size=20))
def test_a_page_of_public_url_is_its_own_origin(
    scheme: str, host: str, port: int | None, path: str
) -> None:
    public = url(scheme, host, port)
    allowed = allowed_origins(public)
    headers = {"origin": url(scheme, host, port)}
    assert cross_site_refusal("POST", headers, allowed) is None
    # Without Origin, the Referer of a page of the site says the same.
    referer = {"referer": url(scheme, host, port, "/campaigns/new?" + path.replace("#", ""))}
    assert cross_site_refusal("DELETE", referer, allowed) is None


@given(SCHEMES, HOSTS, PORTS, SCHEMES, HOSTS, PORTS, UNSAFE)
def test_a_write_from_another_origin_is_refused(
    scheme: str,
    host: str,
    port: int | None,
    other_scheme: str,
    other_host: str,
    other_port: int | None,
    method: str,
) -> None:
    public = url(scheme, host, port)
    other = url(other_scheme, other_host, other_port)
    allowed = allowed_origins(public)
    refused = cross_site_refusal(method, {"origin": other}, allowed) is not None
    assert refused == (origin_of(other) not in allowed)
    if refused:
        assert cross_site_refusal(method, {"referer": other + "/x"}, allowed) is not None


@given(
    st.sampled_from(sorted(SAFE_METHODS)),
    st.dictionaries(st.sampled_from(["origin", "referer"]), st.text()),
)
def test_reads_always_pass(method: str, headers: dict[str, str]) -> None:
    assert cross_site_refusal(method, headers, allowed_origins("https://r.example")) is None


def test_a_write_that_says_nothing_of_its_origin_is_refused() -> None:
    allowed = allowed_origins("https://r.example")
    assert cross_site_refusal("POST", {}, allowed) is not None
    assert cross_site_refusal("POST", {"origin": "null"}, allowed) is not None
    # Origin wins over Referer: a forged Referer cannot vouch for another Origin.
    both = {"origin": "https://evil.example", "referer": "https://r.example/"}
    assert cross_site_refusal("POST", both, allowed) is not None


def test_loopback_names_are_one_site_but_not_another_port() -> None:
    allowed = allowed_origins("http://127.0.0.1:8000")
    for alias in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"):
        assert cross_site_refusal("POST", {"origin": alias}, allowed) is None, alias
    for other in ("http://localhost:9000", "https://localhost:8000", "http://127.0.0.2:8000"):
        assert cross_site_refusal("POST", {"origin": other}, allowed) is not None, other
    assert allowed_origins("https://relance.example.com") == {"https://relance.example.com:443"}
