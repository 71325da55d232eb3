#!/bin/sh
# Installs every Debian package idsync needs to build, test and run its demo.
# Idempotent: does nothing when everything is already installed.
set -eu

PKGS="build-essential meson ninja-build pkg-config clang-format \
libsqlite3-dev sqlite3 libyaml-dev liblua5.4-dev libjansson-dev libcmocka-dev \
libldap-dev libcurl4-openssl-dev libmicrohttpd-dev \
python3-pytest python3-aiosmtpd ldap-utils slapd \
samba samba-ad-dc samba-ad-provision winbind krb5-user ldb-tools \
chromium nodejs iproute2 time"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "idsync: installing Debian packages:$missing" >&2
    # Keep Debian's package scripts from starting system daemons (slapd on
    # *:389, samba) while they install.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# npm packages of the test suite (the SCIM test service, the browser
# driver), from their lock files, once.
top=$(cd "$(dirname "$0")/.." && pwd)
for dir in tests/integration/scim tests/integration/browser; do
    if [ -f "$top/$dir/package-lock.json" ] && [ ! -d "$top/$dir/node_modules" ]; then
        echo "idsync: npm ci in $dir" >&2
        npm ci --silent --no-audit --no-fund --prefix "$top/$dir" >/dev/null
    fi
done
