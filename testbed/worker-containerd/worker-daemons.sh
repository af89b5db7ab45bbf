#!/bin/sh
# worker-daemons start|stop|restart|reload|status   (also installed as worker-dockerd)
# Runs containerd, and dockerd where it is installed, on a testbed worker (no systemd).
# restart: stops dockerd (SIGTERM; it stops its containers), starts it again and waits
# until `docker info` answers; containers with a restart policy come back.
# reload: SIGHUP to dockerd (reloads the reloadable part of /etc/docker/daemon.json).
# stop/restart/reload act on dockerd only; containerd keeps running (its containers too).
set -u
DOCKERD_LOG=/var/log/dockerd.log
CONTAINERD_LOG=/var/log/containerd.log

wait_for() { # seconds command...
    n=$(( $1 * 10 )); shift
    while [ "$n" -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; n=$((n - 1)); done
    return 1
}
running() { pidof "$1" >/dev/null 2>&1; }
has_docker() { [ -x /usr/sbin/dockerd ]; }

start_containerd() {
    running containerd && return 0
    rm -f /run/containerd/containerd.sock   # stale after a container restart
    nohup /usr/bin/containerd </dev/null >>"$CONTAINERD_LOG" 2>&1 &
    wait_for 30 test -S /run/containerd/containerd.sock || { echo "containerd did not start" >&2; return 1; }
}
start_dockerd() {
    has_docker || return 0
    running dockerd && return 0
    rm -f /var/run/docker.pid /var/run/docker.sock
    nohup /usr/sbin/dockerd --containerd=/run/containerd/containerd.sock </dev/null >>"$DOCKERD_LOG" 2>&1 &
    wait_for 60 docker info || { echo "dockerd did not answer within 60 s" >&2; return 1; }
}
stop_dockerd() {
    running dockerd || return 0
    kill -TERM $(pidof dockerd)
    # dockerd gives containers 10 s to stop (shutdown-timeout 15 s by default)
    wait_for 40 sh -c '! pidof dockerd' || { echo "dockerd did not stop" >&2; return 1; }
}

case "${1:-}" in
    start)   start_containerd && start_dockerd ;;
    stop)    stop_dockerd ;;
    restart) stop_dockerd && start_containerd && start_dockerd ;;
    reload)  running dockerd && kill -HUP $(pidof dockerd) ;;
    status)
        ctr version >/dev/null 2>&1 && echo "containerd up" || echo "containerd down"
        has_docker && docker info --format 'dockerd {{.ServerVersion}} up, driver {{.Driver}}'
        ;;
    *) echo "usage: worker-daemons start|stop|restart|reload|status" >&2; exit 64 ;;
esac
