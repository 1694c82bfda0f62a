"""Error bodies a person can read: no Python reprs, no model class names."""

import uuid

import pytest

BASE = "/api/v1/observability/profiling"


@pytest.mark.django_db
def test_a_bad_item_in_a_list_is_named_by_its_place_in_plain_text(api_client):
    response = api_client.post(f"{BASE}/continuous", {"service": "web", "profileTypes": ["cpu", "heap"]}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == {"profileTypes": ['[1]: "heap" is not a valid choice.']}
    assert body["detail"] == 'Invalid request. profileTypes: [1]: "heap" is not a valid choice.'
    assert "ErrorDetail" not in response.content.decode()


@pytest.mark.django_db
def test_a_bad_field_of_a_nested_object_is_named_by_its_path(agent_client):
    response = agent_client.post(
        f"{BASE}/agent/poll", {"service": "web", "instance": {"id": "i-1", "pid": "many", "host": 5 * "x" * 100}}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["errors"]["instance"] == [
        "host: Ensure this field has no more than 255 characters.",
        "pid: A valid integer is required.",
    ]
    assert "ErrorDetail" not in body["detail"] and "pid: A valid integer is required." in body["detail"]


@pytest.mark.django_db
def test_a_profile_that_does_not_exist_is_profile_not_found(api_client):
    response = api_client.get(f"{BASE}/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {"detail": "profile not found"}
    export = api_client.get(f"{BASE}/{uuid.uuid4()}/export", {"format": "folded"})
    assert export.status_code == 404 and export.json() == {"detail": "profile not found"}
