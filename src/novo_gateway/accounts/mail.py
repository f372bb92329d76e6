"""Email from the gateway over SMTP (aiosmtplib): the only module that speaks SMTP.

Used for password reset links. The settings are SMTP_* (see config.py); SMTP_SECURITY picks
STARTTLS on a submission port (587, the default), implicit TLS (465) or none (a relay on the same
host, or a test server). A failure is logged without the message's content (it holds a reset
token) and never reaches the client: the answer to a reset request does not depend on it.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from urllib.parse import urlencode

import aiosmtplib

from novo_gateway.kit.config import Settings

log = logging.getLogger("novo_gateway.mail")

RESET_PAGE = "/dashboard/reset-password"


class Mailer:
    """Sends plain-text emails with the SMTP_* settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, to: str, subject: str, text: str) -> bool:
        """Send one email; False (and a log line) when the SMTP server could not take it."""
        settings = self._settings
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        try:
            await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username or None,
                password=settings.smtp_password or None,
                use_tls=settings.smtp_security == "tls",
                start_tls=settings.smtp_security == "starttls",
                timeout=settings.smtp_timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("email to an account could not be sent: %s", type(exc).__name__)
            return False
        return True

    async def send_password_reset(self, to: str, token: str) -> bool:
        """The reset link for an account (valid PASSWORD_RESET_TTL_SECONDS, once)."""
        settings = self._settings
        link = _pages_origin(settings) + RESET_PAGE + "?" + urlencode({"token": token})
        minutes = settings.password_reset_ttl_seconds // 60
        text = (
            f"Someone asked to reset the password of the Novo Gateway account {to}.\n\n"
            f"To choose a new password, open this link within {minutes} minutes:\n\n"
            f"{link}\n\n"
            "The link works once. Programs may instead send POST /auth/password-reset/confirm\n"
            f'with {{"token": "{token}", "newPassword": "..."}}.\n\n'
            "If you did not ask for this, ignore this email: your password is unchanged.\n"
        )
        return await self.send(to, "Reset your Novo Gateway password", text)


def _pages_origin(settings: Settings) -> str:
    """Where the dashboard's pages are: DASHBOARD_HOST (with PUBLIC_URL's scheme) when set, else
    PUBLIC_URL. Never a request's `Host` header, which a client may set to its own site."""
    if settings.dashboard_host:
        scheme = settings.public_url.split("://", 1)[0].lower()
        return f"{scheme}://{settings.dashboard_host}"
    return settings.public_url.rstrip("/")
