# Malware scanning tests run a real ClamAV clamd (Debian's clamav-daemon) that each test starts itself on a
# signature database it writes (testkit/src/clamd.rs). The package's own services must not run: no clamd
# on the system socket, and no freshclam downloading signatures. policy-rc.d keeps the install from
# starting them; afterwards they are stopped and disabled in case an init system started them anyway.
if ! dpkg-query -W -f='${Status}' clamav-daemon 2>/dev/null | grep -q "install ok installed"; then
  fathom_clamav_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    fathom_clamav_policy=1
  fi
  fathom_apt_install clamav-daemon
  if [ -n "$fathom_clamav_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
    $sudo_cmd systemctl disable --now clamav-freshclam clamav-daemon >/dev/null 2>&1 || true
  fi
fi
