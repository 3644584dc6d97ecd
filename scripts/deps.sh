#!/bin/sh
# Install the Debian packages rerankd needs (build + tests), only those missing.
# Non-interactive; uses sudo when not root. DESIGN.md §11 lists why luajit2 (not luajit).
set -e
BUILD="pkg-config make gcc luajit2 libluajit2-5.1-dev libcurl4-openssl-dev lua-cjson lua-cjson-dev libyaml-dev libevent-dev libhttp-parser-dev libstemmer-dev ca-certificates"
TEST="curl lua-busted lua-check clang wrk sqlite3 libsqlite3-dev redis-server python3 nodejs npm nginx libnginx-mod-http-lua openssl"
case "$1" in
  build) PKGS="$BUILD" ;;
  *) PKGS="$BUILD $TEST" ;;
esac
missing=""
for p in $PKGS; do
  # nodesource's nodejs bundles npm (and conflicts with Debian's npm package)
  [ "$p" = npm ] && command -v npm >/dev/null 2>&1 && continue
  [ "$p" = nodejs ] && command -v node >/dev/null 2>&1 && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
