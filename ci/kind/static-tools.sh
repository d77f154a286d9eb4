# Sourced by the image builds under ci/kind: the static shell tools that
# member images need, from Debian (installed when missing, as root). The
# sourcing script defines die.

# Debian's busybox-static (1.35): sed, wget, awk, base64, ... as applets.
busybox_path() {
  local b
  b=$(command -v busybox || true)
  if [ -z "$b" ]; then
    [ "$(id -u)" = 0 ] || die "busybox is missing: install Debian's busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
    b=$(command -v busybox)
  fi
  ! ldd "$b" >/dev/null 2>&1 || die "$b is not static: install Debian's busybox-static"
  echo "$b"
}

# busybox sh runs its own applets before PATH (Debian builds it standalone),
# so it would never run ci/kind/nslookup-search: /bin/sh is Debian's static
# bash, which start scripts' bashisms ([[ ]], source, $RANDOM) also suit.
bash_static_path() {
  local b=/bin/bash-static
  if [ ! -x "$b" ]; then
    [ "$(id -u)" = 0 ] || die "$b is missing: install Debian's bash-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bash-static >/dev/null
  fi
  [ -x "$b" ] || die "$b is missing: install Debian's bash-static"
  ! ldd "$b" >/dev/null 2>&1 || die "$b is not static"
  echo "$b"
}
