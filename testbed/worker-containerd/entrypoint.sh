#!/bin/sh
# Entrypoint of both flops-testbed worker kinds (see testbed/worker-containerd/Dockerfile).
set -eu

# SSH host keys: generated once per container, never shipped in the image.
ssh-keygen -A >/dev/null

# Root's authorized_keys from $SSH_AUTHORIZED_KEYS (required: no other way to log in).
if [ -z "${SSH_AUTHORIZED_KEYS:-}" ]; then
    echo "worker-entrypoint: SSH_AUTHORIZED_KEYS is empty: nobody could log in" >&2
    exit 64
fi
install -d -m 700 /root/.ssh
printf '%s\n' "$SSH_AUTHORIZED_KEYS" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys

# binfmt_misc: systemd mounts it on a real node; here nobody does.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi

# containerd, and dockerd where installed, in the background (logs in /var/log/).
/usr/local/sbin/worker-daemons start || echo "worker-entrypoint: a daemon did not start, see /var/log/containerd.log and /var/log/dockerd.log" >&2

mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
