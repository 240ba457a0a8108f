"""Streaming http(s) download into a file: size limits, timeouts, a minimum speed, bounded
redirects, retries with bounded backoff on transient failures, and a guard against server-side
request forgery.

The guard resolves every host (the first URL and each redirect target) and refuses non-public
addresses unless a network is allowed by the limits; the request is then sent to the address that
was checked (Host header and TLS server name kept), so a second DNS answer cannot swap it.

Only unencoded bodies are accepted (a gzip-encoded response could expand without bound), and error
texts never show a URL's credentials or raw control characters."""

import email.utils
import functools
import os
import ssl
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import urljoin

import certifi
import httpx

from avlora.netguard import AddressRefused, checked_address, redact_url
from avlora.stage import UserError
from services.ingest.limits import IngestLimits

REDIRECT_CODES = {301, 302, 303, 307, 308}

ProgressCallback = Callable[[int, int], None]  # (bytes so far, declared total or 0)


class DownloadError(Exception):
    """One attempt failed; `transient` says whether another attempt may succeed."""

    def __init__(self, reason: str, transient: bool, retry_after: float = 0.0):
        super().__init__(reason)
        self.transient, self.retry_after = transient, retry_after


def download(url: str, dest: Path, limits: IngestLimits, label: str = "dataset",
             on_bytes: ProgressCallback | None = None, checkpoint: Callable[[], None] | None = None) -> int:
    """Downloads `url` into `dest` (via `dest.part`, renamed when complete) and returns its size.
    Raises UserError("<label> download failed: <reason> for <url>") when it cannot; the URL is
    shown as `redact_url` writes it."""
    attempt, waited = 1, 0.0
    while True:
        try:
            return _download_once(url, Path(dest), limits, on_bytes, checkpoint)
        except DownloadError as error:
            reason = str(error).replace(url, redact_url(url))
            wait = min(max(limits.backoff_s * 2 ** (attempt - 1), error.retry_after), limits.max_retry_wait_s)
            if error.retry_after > limits.max_retry_wait_s:
                reason += (f" (the server asks to retry after {error.retry_after:g} s, longer than the "
                           f"{limits.max_retry_wait_s:g} s ingest waits)")
            elif error.transient and attempt <= limits.retries and waited + wait <= limits.retry_budget_s:
                _sleep(wait, checkpoint)
                waited, attempt = waited + wait, attempt + 1
                continue
            tries = f" (after {attempt} attempts)" if attempt > 1 else ""
            raise UserError(f"{label} download failed: {reason}{tries} for {redact_url(url)}") from None


def _sleep(seconds: float, checkpoint: Callable[[], None] | None) -> None:
    """Waits `seconds`, noticing a cancellation at least every 0.5 s."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if checkpoint:
            checkpoint()
        time.sleep(min(left, 0.5))


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate check of every download (certifi's CAs, as httpx by default), built once:
    building it costs about 20 ms of CPU, most of a small job's ingest."""
    return ssl.create_default_context(cafile=certifi.where())


def _download_once(url: str, dest: Path, limits: IngestLimits, on_bytes, checkpoint) -> int:
    # no single read may wait longer than the speed window, so a slow body is judged in time
    timeout = httpx.Timeout(min(limits.read_timeout_s, limits.slow_window_s), connect=limits.connect_timeout_s)
    deadline = time.monotonic() + limits.total_timeout_s
    current = url
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=tls_context()) as client:
        for _ in range(limits.max_redirects + 1):
            request = _pinned_request(client, current, limits)
            try:
                with closing(client.send(request, stream=True)) as response:
                    if response.status_code in REDIRECT_CODES and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    _check_status(response)
                    return _save(response, dest, limits, deadline, on_bytes, checkpoint)
            except httpx.TimeoutException:
                raise DownloadError("timed out waiting for the server", transient=True) from None
            except httpx.TransportError as error:
                if _certificate_refused(error):  # not transient: another attempt meets the same certificate
                    raise DownloadError(f"the server's TLS certificate is not trusted ({error})",
                                        transient=False) from None
                raise DownloadError(f"connection error ({error})", transient=True) from None
    raise DownloadError(f"more than {limits.max_redirects} redirects", transient=False)


def _certificate_refused(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, ssl.SSLCertVerificationError):
            return True
        error = error.__cause__ or error.__context__
    return False


def _check_status(response: httpx.Response) -> None:
    code = response.status_code
    if code == 200:
        return
    if code == 429 or code >= 500:
        raise DownloadError(f"HTTP {code}", transient=True,
                            retry_after=_seconds_to_wait(response.headers.get("retry-after", "")))
    raise DownloadError(f"HTTP {code}", transient=False)


def _seconds_to_wait(retry_after: str) -> float:
    """A Retry-After header's delay: seconds, or an HTTP date; 0 when absent or unreadable."""
    if retry_after.strip().isdigit():
        return float(retry_after)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0


def _save(response: httpx.Response, dest: Path, limits: IngestLimits, deadline: float,
          on_bytes: ProgressCallback | None, checkpoint: Callable[[], None] | None) -> int:
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise DownloadError(f"the server sent a {encoding}-encoded body although an unencoded one was "
                            "requested; encoded bodies are refused (they can expand without bound)", transient=False)
    declared = response.headers.get("content-length", "")
    total = int(declared) if declared.isdigit() else 0
    if total > limits.max_download_bytes:
        raise DownloadError(f"the file is {total} bytes, over the limit of {limits.max_download_bytes} bytes",
                            transient=False)
    part = dest.with_name(dest.name + ".part")
    size, window_start, window_size = 0, time.monotonic(), 0
    try:
        with open(part, "wb") as out:
            for chunk in response.iter_raw():  # the bytes as sent: nothing is decoded
                size += len(chunk)
                if size > limits.max_download_bytes:
                    raise DownloadError(f"the file is over the limit of {limits.max_download_bytes} bytes",
                                        transient=False)
                now = time.monotonic()
                if now > deadline:
                    raise DownloadError(f"took longer than {limits.total_timeout_s:g} s", transient=False)
                if now - window_start >= limits.slow_window_s:
                    speed = (size - window_size) / (now - window_start)
                    if speed < limits.min_bytes_per_s:
                        raise DownloadError(f"too slow: {speed:.0f} bytes/s over the last {now - window_start:.1f} s, "
                                            f"under the minimum of {limits.min_bytes_per_s} bytes/s", transient=False)
                    window_start, window_size = now, size
                out.write(chunk)
                if on_bytes:
                    on_bytes(size, total)
                if checkpoint:
                    checkpoint()
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return size


def _pinned_request(client: httpx.Client, url_text: str, limits: IngestLimits) -> httpx.Request:
    """A GET for `url_text` sent to the checked address of its host."""
    try:
        url = httpx.URL(url_text)
    except httpx.InvalidURL as error:
        raise DownloadError(f"invalid URL ({error})", transient=False) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise DownloadError("only http:// and https:// URLs can be downloaded", transient=False)
    address = _public_address(url, limits)
    headers = {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return client.build_request("GET", url.copy_with(host=address), headers=headers, extensions=extensions)


def _public_address(url: httpx.URL, limits: IngestLimits) -> str:
    try:
        return checked_address(url.host, url.port or (443 if url.scheme == "https" else 80), limits.allowed_networks)
    except AddressRefused as error:
        raise DownloadError(str(error), transient=error.transient) from None
