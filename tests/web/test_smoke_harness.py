from tests.harness import LiveServer


def test_harness_roundtrip(pixel_server: LiveServer) -> None:
    cookies = pixel_server.grant()
    assert {c["name"] for c in cookies} == {"jobpixel_consent", "jobpixel_vid"}
    assert len(pixel_server.consent_rows()) == 1
