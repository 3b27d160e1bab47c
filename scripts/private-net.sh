#!/bin/sh
# Run a command in a private network namespace whose only interface is loopback (DESIGN §5).
# Ray's high-throughput mode (HAProxy) opens ports on all interfaces; inside this namespace "all
# interfaces" is loopback, so tests and benchmarks expose nothing. Where namespaces are not allowed
# the command runs as is, and what needs the namespace says so (the high-throughput tests skip).
if unshare -rn true 2>/dev/null && command -v ip >/dev/null 2>&1; then
  exec unshare -rn sh -c 'ip link set lo up && exec "$@"' private-net "$@"
fi
echo "private-net: cannot create a network namespace here (unshare -rn); running without one" >&2
exec "$@"
