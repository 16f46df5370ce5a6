"""`python -m rag.chat <streamlit run args>`: metrics endpoint first, then the Streamlit server."""

from __future__ import annotations

import sys

from streamlit.web import cli as streamlit_cli

from rag.chat.metrics import METRICS
from rag.chat.settings import ChatSettings


def main() -> None:
    settings = ChatSettings()
    if settings.chat_metrics_port:
        METRICS.serve(settings.chat_host, settings.chat_metrics_port)
    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(streamlit_cli.main())


if __name__ == "__main__":
    main()
