#!/usr/bin/env bash
# `make demo`: a demo archive under var/demo with pydicom's sample studies sent by C-STORE.
# Ctrl-C stops it. Demo secrets (keyring passphrase, demo passwords) live in
# var/demo-secrets with mode 0600: fine for a demo, never for a real school.
set -euo pipefail
cd "$(dirname "$0")/.."
export TCP_NODELAY=1
ARCHIVE=.venv/bin/archive
HOME_DIR=var/demo
SECRETS=var/demo-secrets
HTTP_PORT=${DEMO_HTTP_PORT:-8042}
DICOM_PORT=${DEMO_DICOM_PORT:-4242}
DEMO_AET=DEMOSCU

mkdir -p -m 700 var "$SECRETS"
umask 077
export ARCHIVE_KEYRING_PASSPHRASE_FILE="$PWD/$SECRETS/keyring-passphrase"
[ -f "$ARCHIVE_KEYRING_PASSPHRASE_FILE" ] || .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))' > "$ARCHIVE_KEYRING_PASSPHRASE_FILE"

if [ ! -f "$HOME_DIR/archive.toml" ]; then
  echo "demo: creating the demo home $HOME_DIR"
  $ARCHIVE init --home "$HOME_DIR" --http-port "$HTTP_PORT" --dicom-port "$DICOM_PORT" >/dev/null
  $ARCHIVE keys init --home "$HOME_DIR" >/dev/null
  $ARCHIVE sources add demo-scu --aet "$DEMO_AET" --host 127.0.0.1 --home "$HOME_DIR" >/dev/null
  # The first personnel account is the operator's (bootstrap); demo-admin administers
  # the rest with its own password (issue 21: people act for themselves).
  export ARCHIVE_ADMIN=demo-admin ARCHIVE_ADMIN_PASSWORD_FILE="$PWD/$SECRETS/demo-admin.password"
  for user in demo-admin:personnel demo-trainer:trainer demo-tpd:tpd demo-registrar:registrar; do
    name=${user%%:*}; role=${user##*:}
    .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))' > "$SECRETS/$name.password"
    $ARCHIVE users add "$name" --role "$role" --password-file "$SECRETS/$name.password" --home "$HOME_DIR" >/dev/null
    $ARCHIVE users train "$name" --home "$HOME_DIR" >/dev/null
  done
fi

echo "demo: starting the archive (Orthanc + plugin)"
$ARCHIVE serve --home "$HOME_DIR" --allow-unencrypted-volume --stable-age 3 &
SERVE=$!
trap 'kill -TERM $SERVE 2>/dev/null; wait $SERVE 2>/dev/null; exit 0' INT TERM
for _ in $(seq 1 300); do
  if $ARCHIVE status --home "$HOME_DIR" --json 2>/dev/null | grep -q '"plugin_loaded": true'; then break; fi
  if ! kill -0 $SERVE 2>/dev/null; then echo "demo: the archive did not start (see $HOME_DIR/run/orthanc.log)" >&2; exit 1; fi
  sleep 0.2
done

SAMPLES=$(.venv/bin/python - <<'PY'
from pydicom.data import get_testdata_file
names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "US1_UNCR.dcm", "waveform_ecg.dcm"]
print(" ".join(p for p in (get_testdata_file(n) for n in names) if p))
PY
)
echo "demo: sending sample studies by C-STORE (dcmtk storescu as $DEMO_AET)"
# shellcheck disable=SC2086
storescu -aec TEACHARCHIVE -aet "$DEMO_AET" 127.0.0.1 "$DICOM_PORT" $SAMPLES || echo "demo: some samples were refused (see above)"
sleep 4
$ARCHIVE status --home "$HOME_DIR"
cat <<EOT

The demo archive is running. Try, in another terminal:
  export ARCHIVE_HOME=$PWD/$HOME_DIR ARCHIVE_KEYRING_PASSPHRASE_FILE=$ARCHIVE_KEYRING_PASSPHRASE_FILE
  .venv/bin/archive status                  # up, versions, counts
  .venv/bin/archive cases list              # teaching cases made from the samples
  .venv/bin/archive audit show --limit 20   # who did what (tamper-evident)
  .venv/bin/archive audit verify            # check the audit chain
  .venv/bin/archive deid SRC DEST           # preview de-identification offline
  curl -u demo-trainer:\$(cat $SECRETS/demo-trainer.password) http://127.0.0.1:$HTTP_PORT/teaching/cases
Demo passwords are in $SECRETS/. Data lives in $HOME_DIR/ (encrypted files; this demo
runs on a plain data directory, allowed explicitly: use 'archive volume create' for real).
Press Ctrl-C to stop.
EOT
wait $SERVE
