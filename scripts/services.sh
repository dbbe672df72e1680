#!/usr/bin/env bash
# Starts the local services the integration tests talk to (PostgreSQL, Redis, RabbitMQ,
# NATS with JetStream, Mosquitto) when they are down, and waits until each answers on
# 127.0.0.1.
# Safe to run again: services already up are left alone.
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local name=$1 port=$2; shift 2
  if up "$port"; then return 0; fi
  echo "services: starting $name (port $port)"
  "$@" >/dev/null 2>&1 || echo "services: could not start $name with: $*" >&2
}

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  start postgresql 5432 pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
command -v redis-server >/dev/null 2>&1 &&
  start redis 6379 redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
command -v rabbitmq-server >/dev/null 2>&1 && start rabbitmq 5672 rabbitmq-server -detached
[ -x /usr/sbin/nats-server ] &&
  start nats 4222 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
# Mosquitto (MQTT 5) with the machine's config: anonymous clients on 127.0.0.1:1883.
# It exits at once, silently, when it cannot write its pid file: /run is emptied at boot.
if [ -x /usr/sbin/mosquitto ] && [ -f /etc/mosquitto/mosquitto.conf ]; then
  if ! up 1883 && [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    install -d -o mosquitto -g mosquitto /run/mosquitto /var/log/mosquitto
  fi
  start mosquitto 1883 /usr/sbin/mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi

status=0
for svc in postgresql:5432 redis:6379 rabbitmq:5672 nats:4222 mosquitto:1883; do
  name=${svc%%:*} port=${svc##*:}
  for _ in $(seq 1 90); do up "$port" && break; sleep 1; done
  if up "$port"; then echo "services: $name is up on 127.0.0.1:$port"
  else echo "services: $name is NOT answering on 127.0.0.1:$port" >&2; status=1; fi
done
exit $status
