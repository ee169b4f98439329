"""One error shape (issue 15, item 5): ``{"detail": "..."}`` or ``{"detail": [{"field",
"message"}]}``, unknown query parameters refused with 422, the shape in the OpenAPI."""

from __future__ import annotations

from fastapi.testclient import TestClient


def fields(r: object) -> list[str]:
    detail = r.json()["detail"]  # type: ignore[attr-defined]
    assert isinstance(detail, list), detail
    for item in detail:
        assert set(item) == {"field", "message"}, item
        assert item["message"], item
    return [item["field"] for item in detail]


def test_unknown_query_parameters_are_refused_naming_them(client: TestClient) -> None:
    r = client.get("/api/contacts", params={"q": "Anne"})  # the case: it is "search"
    assert r.status_code == 422
    assert fields(r) == ["q"]
    assert "search" in r.json()["detail"][0]["message"]
    r = client.get("/api/campaigns", params={"limit": 5, "stauts": "draft", "x": "1"})
    assert (r.status_code, fields(r)) == (422, ["stauts", "x"])
    assert client.get("/api/contacts", params={"search": "Anne"}).status_code == 200
    assert client.get("/api/campaigns", params={"status": "draft"}).status_code == 200
    # Pages are not the API: a hint in a page's link is no error.
    assert client.get("/health", params={"x": "1"}).status_code in (200, 503)


def test_every_4xx_has_the_one_shape(client: TestClient) -> None:
    r = client.post("/api/contacts", json={"phone": "not a phone"})
    assert (r.status_code, fields(r)) == (422, ["phone"])
    r = client.post(
        "/api/contacts", content=b"{bad json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and fields(r)
    r = client.get("/api/campaigns/0")
    assert (r.status_code, fields(r)) == (422, ["campaign_id"])
    r = client.get("/api/contacts/999")
    assert r.status_code == 404 and isinstance(r.json()["detail"], str)
    empty = client.post("/api/campaigns", json={"name": "e", "message_1": "hi"}).json()
    r = client.post(f"/api/campaigns/{empty['id']}/launch")
    assert (r.status_code, fields(r)) == (422, ["category_ids"])


def test_the_openapi_documents_the_one_shape(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert set(components["FieldError"]["properties"]) == {"field", "message"}
    assert "ErrorOut" in components
    refs = {
        str(content.get("schema"))  # the meta handshake answers text/plain, same shape
        for operations in schema["paths"].values()
        for operation in operations.values()
        for code, response in operation["responses"].items()
        if code.startswith("4")
        for content in response["content"].values()
    }
    assert refs == {str({"$ref": "#/components/schemas/ErrorOut"})}
