"""SMS through a provider's HTTP API: POST JSON {"from", "to", "text"} with a bearer token and an
Idempotency-Key, so a provider that honours it sends a retried message once."""

from __future__ import annotations

import httpx

from plumbing.settings import Settings


class SmsError(Exception):
    """The provider refused the message or did not answer."""


class SmsSender:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._s = settings
        self._client = client

    @property
    def enabled(self) -> bool:
        return bool(self._s.sms_provider_url)

    async def send(self, to: str, text: str, message_key: str) -> None:
        s = self._s
        assert s.sms_provider_url, "SMS is off without WAYBILL_SMS_PROVIDER_URL"
        headers = {"Idempotency-Key": message_key}
        if s.sms_provider_token:
            headers["Authorization"] = f"Bearer {s.sms_provider_token}"
        try:
            r = await self._client.post(
                s.sms_provider_url, json={"from": s.sms_sender, "to": to, "text": text}, headers=headers
            )
        except httpx.HTTPError as exc:
            raise SmsError(f"SMS provider unreachable: {type(exc).__name__}") from None
        if r.status_code >= 300:
            raise SmsError(f"SMS provider answered {r.status_code}")
