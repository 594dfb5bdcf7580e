#!/bin/sh
# System packages the project needs, installed only when missing and only where we can
# (root on Debian). Elsewhere, say what is missing and let the caller decide.
set -eu
PYTHON="${1:-python3}"

missing=""
"$PYTHON" -c "import ensurepip, venv" 2>/dev/null || missing="$missing python3-venv"

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "bootstrap: please install these Debian packages first:$missing" >&2
        exit 1
    fi
fi
