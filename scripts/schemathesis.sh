#!/usr/bin/env bash
# First an independent validator (openapi-spec-validator, from PyPI) over the management API's
# OpenAPI document, so code generators can read it; then Schemathesis against it: a relay on
# loopback with two tenants and an operator token, every operation generated from the document,
# all of Schemathesis's checks (no 5xx, no undocumented status codes, no response breaking its
# schema, no schema-violating request accepted). Called by scripts/test; needs the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
version=4.32.5
if ! st --version 2>/dev/null | grep -q "$version"; then
  python3 -m pip install -q --disable-pip-version-check "schemathesis==$version"
fi
validator=0.7.1
python3 -c "import openapi_spec_validator" 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check "openapi-spec-validator==$validator"
bin="$PWD/target/debug/relayward"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/relayward.toml" <<TOML
[smtp]
relay_listen = "127.0.0.1:0"
submission_listen = "127.0.0.1:0"
hostname = "relay.test"
[http]
listen = "127.0.0.1:$port"
[storage]
data_dir = "$dir/data"
TOML
export RELAYWARD_LOG=warn
"$bin" tenant add contoso --config "$dir/relayward.toml" >/dev/null
"$bin" tenant add fabrikam --config "$dir/relayward.toml" >/dev/null
"$bin" domain add contoso contoso.example --config "$dir/relayward.toml" >/dev/null
token=$("$bin" token create --name schemathesis --role operator --config "$dir/relayward.toml" 2>/dev/null)
"$bin" serve --config "$dir/relayward.toml" >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/api/v1/openapi.json" >"$dir/openapi.json"
python3 -m openapi_spec_validator "$dir/openapi.json"
# A schema-valid request may still be refused with 422 when what it asks clashes with what is
# stored, which no schema can say: a user in a domain the tenant does not have, a connector with
# neither ranges nor a certificate name, listed forwarding without domains, a webhook URL that
# does not parse. Everything else about accepting valid data is checked as Schemathesis has it.
cat > "$dir/schemathesis.toml" <<TOML
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
TOML
# From the temporary directory, so Schemathesis's cache stays out of the repository.
cd "$dir"
st --config-file "$dir/schemathesis.toml" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks all --max-examples 30 --seed 20261122 --request-timeout 10 \
  --report-dir "$dir/report"
