#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The story `make demo` tells after the core walk-through, over HTTPS with
# curl (as the agents) and the coffer command (as the admin):
#
#   an agent asks for a credential it lacks; the admin supplies the value
#   through Coffer; the agent reads it with a purpose; the other agent type
#   is denied; the admin revokes it; the next access fails; the audit log
#   shows every decision with its true reason.
#
# Usage: scripts/demo-api.sh DIR   (an embedded-default directory; BUILD
# names the build directory, default ./build). Values are never printed:
# the demo shows their length instead.
set -euo pipefail

dir=${1:?usage: scripts/demo-api.sh DIR}
build=${BUILD:-./build}
log="$dir/cofferd.log"

step() { printf '\n== %s\n' "$*"; }
# Prints a JSON answer, indented, with secret values hidden.
show() {
  sed -E 's/("(api_key|password)":)"[^"]*"/\1"(value hidden by the demo)"/g; s/^/   /'
  echo
}

"$build/cofferd" --dev "$dir" >"$log" 2>&1 &
server=$!
stop() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop EXIT

for _ in $(seq 1 300); do
  if [[ -f "$dir/env.sh" ]] && grep -q 'serving https' "$log" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
# shellcheck disable=SC1091
source "$dir/env.sh"
for _ in $(seq 1 100); do
  curl -sf --cacert "$COFFER_CACERT" "$COFFER_ADDR/v1/health" >/dev/null && break
  sleep 0.1
done

as_deployer=(curl -s --cacert "$COFFER_CACERT" --cert "$COFFER_AGENT_CERT" --key "$COFFER_AGENT_KEY"
  -H 'Content-Type: application/json')
as_analyst=(curl -s --cacert "$COFFER_CACERT" --cert "$COFFER_AGENT2_CERT" --key "$COFFER_AGENT2_KEY"
  -H 'Content-Type: application/json')
project="$COFFER_ADDR/v1/orgs/dev/projects/demo"
name="warehouse-db-$(date +%s)"

step "An agent (deployer) asks for a credential it lacks"
echo "   \$ curl --cert \$COFFER_AGENT_CERT ... -d '{\"name\": \"$name\", ...}' $project/requests"
answer=$("${as_deployer[@]}" -d "{\"name\":\"$name\",\"type\":\"basic_auth\",\"tier\":\"high\",
  \"purpose\":\"run the nightly reconciliation\",\"urgency\":\"normal\",
  \"suggested_grants\":[{\"agent_type\":\"deployer\"}]}" "$project/requests")
echo "$answer" | show
id=$(sed -E 's/.*"id":"([0-9a-f-]+)".*/\1/' <<<"$answer")

step "The admin sees the pending request"
echo "   \$ coffer request list dev/demo"
"$build/coffer" request list dev/demo | sed 's/^/   /'

step "The admin supplies the values through Coffer (here on standard input, never in a chat)"
echo "   \$ coffer request fulfil dev/demo $id --stdin"
printf '{"username":"reconciler","password":"%s"}' "$(head -c 18 /dev/urandom | base64)" |
  "$build/coffer" request fulfil dev/demo "$id" --stdin | sed 's/^/   /'

step "The agent polls its request"
"${as_deployer[@]}" "$project/requests/$id" | show

step "The agent reads the credential, stating why"
"${as_deployer[@]}" -d '{"purpose":"run the nightly reconciliation"}' \
  "$project/credentials/$name/access" | show

step "Another agent type (analyst) is denied, and is not told why"
"${as_analyst[@]}" -d '{"purpose":"curious"}' "$project/credentials/$name/access" | show

step "The admin revokes it"
echo "   \$ coffer revoke dev/demo/$name --reason 'demo over'"
"$build/coffer" revoke "dev/demo/$name" --reason "demo over" | sed 's/^/   /'

step "The next access fails"
"${as_deployer[@]}" -d '{"purpose":"run the nightly reconciliation"}' \
  "$project/credentials/$name/access" | show

step "What the auditor sees (psql as coffer_auditor: true reasons the agents never saw)"
sleep 1 # the sealer seals within a second; the checkpoint column shows where
psql_bin=$(command -v psql || echo /usr/lib/postgresql/15/bin/psql)
echo "   \$ psql \"\$COFFER_AUDITOR_DSN\" -c 'SELECT ... FROM audit.access_log ...'"
"$psql_bin" -X -q -d "$COFFER_AUDITOR_DSN" -c \
  "SELECT to_char(at, 'HH24:MI:SS.MS') AS at, action, reason,
          coalesce(agent_type || '/' || instance, admin) AS who, credential, purpose, checkpoint
   FROM audit.access_log WHERE credential = '$name' OR action IN ('request', 'fulfill')
   ORDER BY id DESC LIMIT 12" | sed 's/^/   /'

step "The sealer has signed the log in the token; the auditor verifies it, pinning the key"
fingerprint=$("$psql_bin" -X -Atq -d "$COFFER_AUDITOR_DSN" -c \
  "SELECT fingerprint_hex FROM audit.signing_keys WHERE state = 'current'")
echo "   \$ coffer audit verify --fingerprint $fingerprint"
"$build/coffer" audit verify --fingerprint "$fingerprint" | sed 's/^/   /'

step "Someone with database superuser rights edits a sealed purpose; verification finds it"
target=$("$psql_bin" -X -Atq -d "$COFFER_DB_ADMIN_DSN" -c \
  "SELECT max(id) FROM coffer.audit_events WHERE purpose IS NOT NULL
     AND id <= (SELECT max(last_event) FROM coffer.audit_checkpoints)")
original=$("$psql_bin" -X -Atq -d "$COFFER_DB_ADMIN_DSN" -c \
  "SELECT purpose FROM coffer.audit_events WHERE id = $target")
# Rewrites event $target's purpose with the append-only triggers disabled.
rewrite() {
  "$psql_bin" -X -q -d "$COFFER_DB_ADMIN_DSN" -v p="$1" >/dev/null <<SQL
ALTER TABLE coffer.audit_events DISABLE TRIGGER USER;
UPDATE coffer.audit_events SET purpose = :'p' WHERE id = $target;
ALTER TABLE coffer.audit_events ENABLE TRIGGER USER;
SQL
}
echo "   \$ psql \"\$COFFER_DB_ADMIN_DSN\"   (dev only) -- disable the triggers, edit event $target"
rewrite "nothing to see here"
echo "   \$ coffer audit verify --no-record"
"$build/coffer" audit verify --no-record | sed 's/^/   /' || true
rewrite "$original"
echo "   (the purpose is put back; the checkpoints record that the triggers were disabled"
echo "   if the sealer ran meanwhile: see schema_changed in audit.checkpoints)"
step "Security officers hold the keys: a first ceremony enrols two, with a quorum of 2"
# A real ceremony has each officer type a passphrase unseen; the demo pipes made-up ones.
if "$build/coffer" ceremony officer list 2>&1 | grep -q 'no quorum is set'; then
  echo "   \$ coffer ceremony init --quorum 2 --officer alice bob"
  printf 'alice-demo-passphrase\nalice-demo-passphrase\nbob-demo-passphrase\nbob-demo-passphrase\n' |
    "$build/coffer" ceremony init --quorum 2 --officer alice bob 2>/dev/null |
    grep -E '^(ceremony|quorum set|officers enrolled|outcome)' | sed 's/^/   /'
else
  echo "   (officers were enrolled by an earlier run of the demo)"
  "$build/coffer" ceremony officer list | sed 's/^/   /'
fi

step "They rotate the master key: prepare, two approvals of the exact description, run"
plan_text=$("$build/coffer" ceremony prepare rotate-mk)
plan=$(sed -nE 's/^plan: ([0-9a-f-]{36})$/\1/p' <<<"$plan_text" | head -1)
sha=$(sed -nE 's/^sha256: ([0-9a-f]{64})$/\1/p' <<<"$plan_text")
grep -E '^(operation|master key|will|expires|sha256):' <<<"$plan_text" | sed 's/^/   /'
for who in alice bob; do
  echo "   \$ coffer ceremony approve $plan --officer $who --sha256 ${sha:0:16}..."
  echo "$who-demo-passphrase" |
    "$build/coffer" ceremony approve "$plan" --officer "$who" --sha256 "$sha" 2>/dev/null |
    grep '^approval recorded' | sed 's/^/   /'
done
echo "   \$ coffer ceremony run $plan"
"$build/coffer" ceremony run "$plan" 2>/dev/null |
  grep -E '^( +created master key| +master key v[0-9]+ +label|outcome|signed by|ceremony [0-9a-f-]+ recorded)' |
  sed 's/^/   /'
ceremony=$("$psql_bin" -X -Atq -d "$COFFER_AUDITOR_DSN" -c \
  "SELECT id FROM audit.ceremonies WHERE kind = 'rotate-mk' ORDER BY started_at DESC LIMIT 1")
echo "   \$ coffer ceremony show $ceremony --fingerprint ${fingerprint:0:16}..."
"$build/coffer" ceremony show "$ceremony" --fingerprint "$fingerprint" | grep '^signature' |
  sed 's/^/   /'

echo
echo "Demo complete. \`cofferd --dev $dir\` serves this environment; \`source $dir/env.sh\` to use it."
