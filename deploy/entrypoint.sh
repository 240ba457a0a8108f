#!/bin/sh
# The image's entrypoint. No arguments: avlora's help. ledger | ingest | preprocess | trainer | web: that
# service (python -m services.NAME). Anything else runs as given: avlora --help, nats-server ...
set -e
case "$1" in
  "") exec avlora --help ;;
  ledger|ingest|preprocess|trainer|web) service=$1; shift; exec python -m "services.$service" "$@" ;;
  *) exec "$@" ;;
esac
