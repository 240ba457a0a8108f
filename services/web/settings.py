"""The web page's settings: AVLORA_WEB_<FIELD> variables (avlora/config.py)."""

from dataclasses import dataclass

from avlora import config


@dataclass(frozen=True)
class WebSettings:
    ENV_PREFIX = "WEB_"
    host: str = "127.0.0.1"                # the address the page listens on (0.0.0.0 in a container)
    port: int = 8080                       # the page's HTTP port
    api_addr: str = ""                     # the public JobService the page calls with the user's key
    ingest_addr: str = ""                  # the ingest service, for the form's zip uploads
    # the session cookie only over HTTPS (on behind a TLS ingress; off for http://127.0.0.1)
    secure_cookie: bool = False

    @classmethod
    def from_env(cls) -> "WebSettings":
        return config.from_env(cls)
