#!/usr/bin/env bash
# Makes sure the local PostgreSQL and RabbitMQ that the demo and the tests use are up,
# starting them the way this machine's images do if they are not.
set -euo pipefail

listening() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() {
  local name=$1 port=$2 seconds=$3
  for _ in $(seq "$seconds"); do
    listening "$port" && return 0
    sleep 1
  done
  echo "ensure-services: $name is not listening on 127.0.0.1:$port after ${seconds}s" >&2
  return 1
}

if ! listening 5432; then
  echo "ensure-services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  wait_for PostgreSQL 5432 60
fi

if ! listening 5672; then
  echo "ensure-services: starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ 5672 120
fi
# A broker that accepts TCP may still be booting; wait until it answers as a node.
if command -v rabbitmqctl >/dev/null; then
  timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
echo "ensure-services: PostgreSQL and RabbitMQ are up"
