"""E-mail over SMTP (stdlib smtplib in a thread: one short connection per message)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

from plumbing.settings import Settings


class EmailSender:
    def __init__(self, settings: Settings) -> None:
        self._s = settings

    @property
    def enabled(self) -> bool:
        return bool(self._s.smtp_host)

    def build(self, to: str, subject: str, body: str, message_key: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._s.smtp_from
        msg["To"] = to
        msg["Subject"] = subject
        # Stable per notification: a message re-sent after a crash carries the same id (receivers dedupe).
        msg["Message-ID"] = make_msgid(idstring=message_key, domain="waybill.invalid")
        msg["X-Waybill-Notification"] = message_key
        msg.set_content(body)
        return msg

    async def send(self, msg: EmailMessage) -> None:
        await asyncio.to_thread(self._send_sync, msg)

    def _send_sync(self, msg: EmailMessage) -> None:
        s = self._s
        assert s.smtp_host, "e-mail is off without WAYBILL_SMTP_HOST"
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            smtp.send_message(msg)
