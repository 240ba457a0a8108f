"""Streaming http(s) download into a file: size limits, timeouts, bounded redirects, retries with
backoff on transient failures, and a guard against server-side request forgery.

The guard resolves every host (the first URL and each redirect target) and refuses non-public
addresses unless a network is allowed by the limits; the request is then sent to the address that
was checked (Host header and TLS server name kept), so a second DNS answer cannot swap it."""

import ipaddress
import os
import socket
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import urljoin

import httpx

from avlora.stage import UserError
from services.ingest.limits import IngestLimits

REDIRECT_CODES = {301, 302, 303, 307, 308}
MAX_BACKOFF_S = 30.0

ProgressCallback = Callable[[int, int], None]  # (bytes so far, declared total or 0)


class DownloadError(Exception):
    """One attempt failed; `transient` says whether another attempt may succeed."""

    def __init__(self, reason: str, transient: bool, retry_after: float = 0.0):
        super().__init__(reason)
        self.transient, self.retry_after = transient, retry_after


def download(url: str, dest: Path, limits: IngestLimits, label: str = "dataset",
             on_bytes: ProgressCallback | None = None, checkpoint: Callable[[], None] | None = None) -> int:
    """Downloads `url` into `dest` (via `dest.part`, renamed when complete) and returns its size.
    Raises UserError("<label> download failed: <reason> for <url>") when it cannot."""
    attempt = 1
    while True:
        try:
            return _download_once(url, Path(dest), limits, on_bytes, checkpoint)
        except DownloadError as error:
            if not error.transient or attempt > limits.retries:
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise UserError(f"{label} download failed: {error}{tries} for {url}") from None
            time.sleep(min(max(limits.backoff_s * 2 ** (attempt - 1), error.retry_after), MAX_BACKOFF_S))
            attempt += 1


def _download_once(url: str, dest: Path, limits: IngestLimits, on_bytes, checkpoint) -> int:
    timeout = httpx.Timeout(limits.read_timeout_s, connect=limits.connect_timeout_s)
    deadline = time.monotonic() + limits.total_timeout_s
    current = url
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
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
                raise DownloadError(f"connection error ({error})", transient=True) from None
    raise DownloadError(f"more than {limits.max_redirects} redirects", transient=False)


def _check_status(response: httpx.Response) -> None:
    code = response.status_code
    if code == 200:
        return
    if code == 429 or code >= 500:
        retry_after = response.headers.get("retry-after", "")
        raise DownloadError(f"HTTP {code}", transient=True,
                            retry_after=float(retry_after) if retry_after.isdigit() else 0.0)
    raise DownloadError(f"HTTP {code}", transient=False)


def _save(response: httpx.Response, dest: Path, limits: IngestLimits, deadline: float,
          on_bytes: ProgressCallback | None, checkpoint: Callable[[], None] | None) -> int:
    declared = response.headers.get("content-length", "")
    total = int(declared) if declared.isdigit() else 0
    if total > limits.max_download_bytes:
        raise DownloadError(f"the file is {total} bytes, over the limit of {limits.max_download_bytes} bytes",
                            transient=False)
    part = dest.with_name(dest.name + ".part")
    size = 0
    try:
        with open(part, "wb") as out:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limits.max_download_bytes:
                    raise DownloadError(f"the file is over the limit of {limits.max_download_bytes} bytes",
                                        transient=False)
                if time.monotonic() > deadline:
                    raise DownloadError(f"took longer than {limits.total_timeout_s:g} s", transient=False)
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
    """The first address of the URL's host, after checking that every address it resolves to is
    public or in an allowed network."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(url.host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise DownloadError(f"cannot resolve host {url.host} ({error})", transient=True) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not is_allowed_address(address, limits):
            raise DownloadError(f"host {url.host} resolves to the non-public address {address}, which is "
                                "refused (AVLORA_INGEST_ALLOW_NETWORKS can allow a network)", transient=False)
    return str(addresses[0])


def is_allowed_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, limits: IngestLimits) -> bool:
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address.version == network.version and address in network for network in limits.allowed_networks):
        return True
    return address.is_global and not address.is_multicast
