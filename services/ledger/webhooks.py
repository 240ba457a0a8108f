"""Webhook delivery: the ledger POSTs each state change of a job that named a webhook_url, signed
as Standard Webhooks says (the `standardwebhooks` library) with its tenant's secret.

The messages wait in the webhook_deliveries table (written in the transaction that changed the
state), so a delivery survives a ledger restart and is sent at least once; its id (the webhook-id
header) is the same on every attempt. A failed attempt (no connection, a timeout, any status but
2xx) is retried after WEBHOOK_RETRY_BASE_S, doubled each time up to WEBHOOK_MAX_RETRY_WAIT_S; the
first attempt to fail WEBHOOK_RETRY_WINDOW_S or more after the state change is the last (the
message is marked failed). Every
attempt is recorded (ListWebhookDeliveries). The receiver's address is checked as a dataset URL's
is (avlora/netguard.py) on every attempt, and the request goes to the checked address."""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from standardwebhooks import Webhook

from avlora import config, netguard
from avlora.netguard import redact_url
from services.ledger.ledger import Ledger
from services.ledger.models import WebhookDelivery, utcnow

log = structlog.get_logger()


@dataclass(frozen=True)
class WebhookOptions:
    ENV_PREFIX = "WEBHOOK_"
    retry_base_s: float = 5.0              # the wait after a webhook's first failed attempt, doubled on each retry
    max_retry_wait_s: float = 3600.0       # the longest wait between two attempts of a webhook
    retry_window_s: float = 86400.0        # a webhook is retried for this long after its state change, then marked failed
    timeout_s: float = 10.0                # the longest a receiver may take to answer one attempt
    concurrency: int = 16                  # webhook attempts in flight at once

    @classmethod
    def from_env(cls) -> "WebhookOptions":
        return config.from_env(cls)

    def wait_after(self, attempts: int) -> float:
        """The wait before the next attempt after `attempts` failed ones."""
        return min(self.retry_base_s * 2 ** (attempts - 1), self.max_retry_wait_s)


class AttemptFailed(Exception):
    def __init__(self, reason: str, status_code: int = 0):
        super().__init__(reason)
        self.status_code = status_code


def checked_webhook_url(url: str, allowed: list[netguard.Network]) -> str:
    """Raises ValueError naming what is wrong with a webhook URL (scheme, host, a non-public address)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"not a valid URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an http:// or https:// URL")
    try:
        netguard.checked_address(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80), allowed)
    except netguard.AddressRefused as error:
        raise ValueError(str(error)) from None
    return url


async def post_signed(client: httpx.AsyncClient, delivery: WebhookDelivery, secret: str,
                      allowed: list[netguard.Network]) -> int:
    """One attempt: the status code of a 2xx answer, else AttemptFailed."""
    url = httpx.URL(delivery.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        address = await asyncio.to_thread(netguard.checked_address, url.host, port, allowed)
    except netguard.AddressRefused as error:
        raise AttemptFailed(str(error)) from None
    sent_at = utcnow()
    headers = {"webhook-id": delivery.message_id, "webhook-timestamp": str(int(sent_at.timestamp())),
               "webhook-signature": Webhook(secret).sign(delivery.message_id, sent_at, delivery.payload),
               "content-type": "application/json", "host": url.netloc.decode("ascii"), "user-agent": "avlora-webhooks"}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    request = client.build_request("POST", url.copy_with(host=address), headers=headers,
                                   content=delivery.payload.encode(), extensions=extensions)
    try:
        response = await client.send(request)
    except httpx.TimeoutException:
        raise AttemptFailed("timed out waiting for the receiver") from None
    except httpx.TransportError as error:
        raise AttemptFailed(f"connection error ({error})") from None
    if not 200 <= response.status_code < 300:
        raise AttemptFailed(f"HTTP {response.status_code}", response.status_code)
    return response.status_code


async def _attempt(ledger: Ledger, client: httpx.AsyncClient, delivery: WebhookDelivery, secret: str | None,
                   options: WebhookOptions, allowed: list[netguard.Network]) -> None:
    at = utcnow()
    try:
        code = await post_signed(client, delivery, secret or await ledger.webhook_secret(delivery.tenant_id), allowed)
    except AttemptFailed as error:
        attempts = delivery.attempts + 1
        retry_at = at + timedelta(seconds=options.wait_after(attempts))
        created = delivery.created_at if delivery.created_at.tzinfo else delivery.created_at.replace(tzinfo=at.tzinfo)
        gave_up = at >= created + timedelta(seconds=options.retry_window_s)  # retried for the whole window
        log.warning("webhook attempt failed", job_id=delivery.job_id, message_id=delivery.message_id,
                    url=redact_url(delivery.url), error=str(error), attempt=attempts, gave_up=gave_up)
        await ledger.record_webhook_attempt(delivery.message_id, at, error.status_code, str(error),
                                            "failed" if gave_up else "pending", None if gave_up else retry_at)
        return
    log.info("webhook delivered", job_id=delivery.job_id, message_id=delivery.message_id, status_code=code)
    await ledger.record_webhook_attempt(delivery.message_id, at, code, "", "delivered", None)


async def deliver_webhooks(ledger: Ledger, options: WebhookOptions, stopping: asyncio.Event,
                           allowed: list[netguard.Network]) -> None:
    """Until `stopping`: sends the due deliveries, up to `concurrency` at once (one ledger process
    runs this: the event consumer's)."""
    poll = min(1.0, options.retry_base_s)
    async with httpx.AsyncClient(timeout=options.timeout_s, follow_redirects=False, trust_env=False,
                                 verify=True) as client:
        while not stopping.is_set():
            try:
                due = await ledger.due_webhooks(utcnow(), options.concurrency)
                await asyncio.gather(*(_attempt(ledger, client, delivery, secret, options, allowed)
                                       for delivery, secret in due))
            except Exception as error:  # e.g. the database is unavailable: later
                log.error("webhook delivery failed", error=repr(error))
                due = []
            if not due:
                try:
                    await asyncio.wait_for(stopping.wait(), poll)
                except asyncio.TimeoutError:
                    pass
