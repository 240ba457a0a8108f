"""`python -m services.web`: the jobs' web page under uvicorn (AVLORA_WEB_* settings)."""

import uvicorn

from services.web.app import make_app
from services.web.settings import WebSettings

if __name__ == "__main__":
    settings = WebSettings.from_env()
    uvicorn.run(make_app(settings), host=settings.host, port=settings.port, proxy_headers=False,
                log_level="info", timeout_graceful_shutdown=5)
