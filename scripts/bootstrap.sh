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
    echo "bootstrap: the deploy checks and the load benchmark skip without these Debian packages:$wanted" >&2
fi
