"""`python -m services.web`: the jobs' web page under uvicorn (AVLORA_WEB_* settings), with its
Prometheus metrics on AVLORA_METRICS_PORT and its log lines as the other processes write them."""

import uvicorn

from avlora import metrics
from avlora.logs import configure_logging
from avlora.settings import Settings
from services.web.app import make_app
from services.web.settings import WebSettings

if __name__ == "__main__":
    configure_logging()
    metrics.serve(Settings.from_env().metrics_port)
    settings = WebSettings.from_env()
    uvicorn.run(make_app(settings), host=settings.host, port=settings.port, proxy_headers=False,
                log_config=None, log_level="info", timeout_graceful_shutdown=5)
