#!/bin/sh
# A private CA and the broker's certificate, in docker/mosquitto/certs/ (mount it at
# /mosquitto/config/certs). The centre and the devices trust ca.pem (mqtt.ca_file).
#   docker/mosquitto/make-certs.sh mqtt.example.org [more names...]
set -eu
dir=$(dirname "$0")/certs
mkdir -p "$dir"
cn=${1:-mqtt}
san="DNS:$cn"
for n in "$@"; do san="$san,DNS:$n"; done
san="$san,DNS:mqtt,IP:127.0.0.1"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=monitor MQTT CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san" > "$dir/ext.cnf"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 825 \
    -extfile "$dir/ext.cnf" -out "$dir/server.pem" 2>/dev/null
rm -f "$dir/server.csr" "$dir/ext.cnf" "$dir/ca.srl"
chmod 600 "$dir/ca.key" "$dir/server.key"
echo "wrote $dir/ca.pem, server.pem, server.key (keep ca.key offline)"
