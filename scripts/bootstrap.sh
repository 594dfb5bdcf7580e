#!/bin/sh
# System packages the project needs, installed only when missing and only where we can
# (root on Debian). Elsewhere, say what is missing and let the caller decide.
#
# Required: python3-venv (the virtualenv). Wanted by the deploy checks (tests/deploy), which
# skip with a reason naming the package when their tool is absent: prometheus (promtool, and
# a real Prometheus scraping a test gateway) and systemd (systemd-analyze). Wanted by the load
# benchmark (benchmarks/, and its smoke test, which skips without them): wrk, the load
# generator, and nginx-light, the nginx it runs beside the gateway as a peer. Wanted by the
# JavaScript signer's tests (docs/examples/), which skip without it: nodejs (node).
# Wanted by the browser tests (tests/integration/test_browsers.py, which skip without them):
# chromium-headless-shell, and hls.js (pinned below, fetched with npm, kept in .cache/).
set -eu
PYTHON="${1:-python3}"

missing=""
"$PYTHON" -c "import ensurepip, venv" 2>/dev/null || missing="$missing python3-venv"

wanted=""
command -v promtool >/dev/null 2>&1 || wanted="$wanted prometheus"
command -v systemd-analyze >/dev/null 2>&1 || wanted="$wanted systemd"
command -v wrk >/dev/null 2>&1 || wanted="$wanted wrk"
# nginx lives in /usr/sbin, which a non-root PATH may lack
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || wanted="$wanted nginx-light"
command -v node >/dev/null 2>&1 || wanted="$wanted nodejs"
command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1 \
    || wanted="$wanted chromium-headless-shell"

can_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
}

if [ -n "$missing$wanted" ] && can_install; then
    echo "bootstrap: installing Debian packages:$missing$wanted"
    apt-get update -qq
    # The prometheus and nginx-light packages come with servers that would start listening on
    # :9090 and :80 (and are only wanted here for their binaries): while installing, a
    # policy-rc.d that denies every service start keeps them down, unless the machine already
    # has its own policy.
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        own_policy=yes
    fi
    # shellcheck disable=SC2086 # word splitting of the package lists is intended
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $missing $wanted >/dev/null || status=$?
    [ -z "$own_policy" ] || rm -f "$policy"
    [ "${status:-0}" = 0 ] || exit "$status"
    # and not at the next boot either
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        case "$wanted" in *prometheus*) systemctl disable --now prometheus >/dev/null 2>&1 || true ;; esac
        case "$wanted" in *nginx-light*) systemctl disable --now nginx >/dev/null 2>&1 || true ;; esac
    fi
elif [ -n "$missing" ]; then
    echo "bootstrap: please install these Debian packages first:$missing" >&2
    exit 1
elif [ -n "$wanted" ]; then
    echo "bootstrap: the deploy checks, the load benchmark and the browser tests skip without these Debian packages:$wanted" >&2
fi

# hls.js for the browser tests: one pinned release, its dist/hls.min.js checked against the hash
# recorded here, kept in .cache/ so that later runs need no network.
HLS_VERSION=1.7.4
HLS_SHA256=cfc70cc9e9fc63d071919e087670abc760c8fd1bc889b88588026e4d22193bbe
hls="$(dirname "$0")/../.cache/hls.js-$HLS_VERSION/hls.min.js"
if [ ! -f "$hls" ] && command -v npm >/dev/null 2>&1; then
    work=$(mktemp -d)
    if (cd "$work" && npm pack --silent "hls.js@$HLS_VERSION" >/dev/null \
        && tar -xzf "hls.js-$HLS_VERSION.tgz" package/dist/hls.min.js \
        && echo "$HLS_SHA256  package/dist/hls.min.js" | sha256sum -c --status); then
        mkdir -p "$(dirname "$hls")"
        mv "$work/package/dist/hls.min.js" "$hls"
    else
        echo "bootstrap: could not fetch hls.js $HLS_VERSION; the HLS browser tests skip" >&2
    fi
    rm -rf "$work"
elif [ ! -f "$hls" ]; then
    echo "bootstrap: the HLS browser tests skip without hls.js, which needs npm to fetch" >&2
fi
