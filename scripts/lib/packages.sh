# Sourced by scripts: install_missing PURPOSE PKG... installs the given Debian packages (those a
# script found missing) when running as root, and otherwise fails naming them.
install_missing() {
  local purpose=$1
  shift
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "$purpose needs these Debian packages: $* (run as root to install them, or apt-get install them)" >&2
    exit 1
  fi
  echo "== installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
