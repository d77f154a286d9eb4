# Sourced by ci/start-dockerd and ci/kind/create-cluster (POSIX sh).
# True where the capability bounding set lacks capabilities the kernel has
# (this VM lacks CAP_SYS_RESOURCE): privileged containers then need
# ci/runc-capfilter.
capability_set_is_short() {
  last_cap=$(cat /proc/sys/kernel/cap_last_cap)
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  [ "$((0x$bnd))" != "$(((1 << (last_cap + 1)) - 1))" ]
}
