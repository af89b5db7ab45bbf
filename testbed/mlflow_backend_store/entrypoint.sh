#!/bin/bash
# Entrypoint of the offline mlflow_backend_store image (Debian MariaDB), with
# the contract of the mysql image's entrypoint that FLOps relies on:
# - an empty /var/lib/mysql is initialised, and root gets MYSQL_ROOT_PASSWORD
#   (for 'root'@'localhost' and 'root'@'%'); an initialised one is kept as is;
# - the server listens on 0.0.0.0:3306 and runs in the foreground (PID 1,
#   so `docker stop` shuts it down cleanly).
# Extra arguments are passed to mariadbd.
set -euo pipefail

datadir=/var/lib/mysql
mkdir -p "$datadir" /run/mysqld
chown mysql:mysql "$datadir" /run/mysqld

if [ ! -d "$datadir/mysql" ]; then
    if [ -z "${MYSQL_ROOT_PASSWORD:-}" ]; then
        echo "mariadb-entrypoint: MYSQL_ROOT_PASSWORD must be set to initialise $datadir" >&2
        exit 1
    fi
    echo "mariadb-entrypoint: initialising $datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
    # SQL string literal: escape backslashes, then single quotes.
    pw=${MYSQL_ROOT_PASSWORD//\\/\\\\}
    pw=${pw//\'/\\\'}
    mariadbd --user=mysql --datadir="$datadir" --bootstrap --skip-networking <<SQL
DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';
FLUSH PRIVILEGES;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
    echo "mariadb-entrypoint: initialised"
fi

exec mariadbd --user=mysql --datadir="$datadir" \
    --bind-address=0.0.0.0 --port=3306 --skip-name-resolve "$@"
