#!/bin/bash
# Entrypoint of the offline vsftpd_server image (Debian vsftpd), following
# fauria/vsftpd's environment: FTP_USER, FTP_PASS, PASV_ADDRESS,
# PASV_MIN_PORT, PASV_MAX_PORT, LOG_STDOUT.
set -euo pipefail

user=${FTP_USER:-flops}
if [ -z "${FTP_PASS:-}" ]; then
    echo "vsftpd-entrypoint: FTP_PASS must be set" >&2
    exit 1
fi
home=/home/vsftpd/$user
log=/var/log/vsftpd/vsftpd.log

grep -qx /usr/sbin/nologin /etc/shells || echo /usr/sbin/nologin >>/etc/shells
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --home-dir "$home" --no-create-home --shell /usr/sbin/nologin "$user"
fi
printf '%s:%s\n' "$user" "$FTP_PASS" | chpasswd
mkdir -p "$home" /var/run/vsftpd/empty /var/log/vsftpd
chown "$user:$user" "$home"
touch "$log"

conf=/etc/vsftpd.flops.conf
cat >"$conf" <<CONF
listen=YES
listen_ipv6=NO
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
allow_writeable_chroot=YES
pam_service_name=vsftpd
secure_chroot_dir=/var/run/vsftpd/empty
# No seccomp sandbox or network namespaces inside a container.
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
pasv_enable=YES
pasv_min_port=${PASV_MIN_PORT:-21100}
pasv_max_port=${PASV_MAX_PORT:-21110}
port_enable=YES
connect_from_port_20=YES
xferlog_enable=YES
xferlog_std_format=NO
vsftpd_log_file=$log
dirmessage_enable=NO
use_localtime=NO
CONF
if [ -n "${PASV_ADDRESS:-}" ]; then
    echo "pasv_address=$PASV_ADDRESS" >>"$conf"
    if ! [[ $PASV_ADDRESS =~ ^[0-9.]+$ ]]; then
        echo "pasv_addr_resolve=YES" >>"$conf"
    fi
fi

if [ "${LOG_STDOUT:-}" = "true" ] || [ "${LOG_STDOUT:-}" = "yes" ]; then
    tail -n 0 -F "$log" &
fi

echo "vsftpd-entrypoint: user $user, root $home, passive ports" \
     "${PASV_MIN_PORT:-21100}-${PASV_MAX_PORT:-21110}, pasv_address ${PASV_ADDRESS:-(from connection)}"

# vsftpd ignores SIGTERM as PID 1: keep bash as PID 1 and forward it.
vsftpd "$conf" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
set +e
wait "$pid"
status=$?
if kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    status=$?
fi
exit "$status"
