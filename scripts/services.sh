#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the tests use are up; start the local ones if they are not.
set -euo pipefail

pg_host=127.0.0.1 pg_port=5432 redis_host=127.0.0.1 redis_port=6379

pg_up() { pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null; }
redis_up() { redis-cli -h "$redis_host" -p "$redis_port" ping 2>/dev/null | grep -q PONG; }

if ! pg_up && command -v pg_ctlcluster >/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! redis_up && command -v redis-server >/dev/null; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
for _ in $(seq 1 30); do pg_up && redis_up && exit 0; sleep 1; done
pg_up || echo "PostgreSQL is not reachable at $pg_host:$pg_port (see README: Tests)" >&2
redis_up || echo "Redis is not reachable at $redis_host:$redis_port (see README: Tests)" >&2
exit 1
