#!/bin/bash
# Entrypoint of the mysql:8.0.29 stand-in (Debian's MariaDB): what the official image's entrypoint
# does for the variables Katib's katib-mysql Deployment sets. On an empty data directory it
# initialises the server, sets the root password (MYSQL_ROOT_PASSWORD, or none with
# MYSQL_ALLOW_EMPTY_PASSWORD) for local and network logins, and creates MYSQL_DATABASE; then it
# runs the server in the foreground with the container's arguments (`--datadir DIR` in Katib's).
set -euo pipefail
if [[ "${1:-}" == mysqld ]]; then shift; fi
datadir=/var/lib/mysql
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
  --datadir) datadir="${args[i + 1]}" ;;
  --datadir=*) datadir="${args[i]#--datadir=}" ;;
  esac
done
server=(mariadbd --skip-name-resolve --bind-address=0.0.0.0 "$@")
if [[ ! -d "$datadir/mysql" ]]; then
  if [[ -z "${MYSQL_ROOT_PASSWORD:-}" && -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]]; then
    echo "docker-entrypoint: database is uninitialized and MYSQL_ROOT_PASSWORD is not set" >&2
    exit 1
  fi
  mkdir -p "$datadir"
  trap 'rm -rf "$datadir"' ERR # a half-initialised data directory would skip this step next time
  mariadb-install-db --datadir="$datadir" --auth-root-authentication-method=normal --skip-test-db >/dev/null
  "${server[@]}" --skip-networking --socket=/tmp/init.sock &
  pid=$!
  for _ in $(seq 60); do mariadb-admin --socket=/tmp/init.sock ping >/dev/null 2>&1 && break; sleep 1; done
  pw="${MYSQL_ROOT_PASSWORD:-}"
  mariadb --socket=/tmp/init.sock -u root <<SQL
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';
${MYSQL_DATABASE:+CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;}
FLUSH PRIVILEGES;
SQL
  kill "$pid" && wait "$pid" || true
  trap - ERR
  echo "docker-entrypoint: initialised $datadir" >&2
fi
exec "${server[@]}"
