#!/usr/bin/env bash
# Provision a LUKS2 volume for an archive home's data directory on a server.
# See ops/LUKS.md for key slots, header backup and recovery. Run as root.
#
#   ops/luks-provision.sh --device /dev/sdX --home /srv/archive [--name archive-data]
#                         --header-backup /media/usb/archive-luks-header.img
#
# The passphrase is read from the terminal by cryptsetup itself (never from argv).
# Everything on DEVICE is destroyed.
set -euo pipefail

DEVICE="" HOME_DIR="" NAME="archive-data" HEADER_BACKUP="" ASSUME_YES=0

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "error: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --home) HOME_DIR="$2"; shift 2 ;;
    --name) NAME="$2"; shift 2 ;;
    --header-backup) HEADER_BACKUP="$2"; shift 2 ;;
    --yes) ASSUME_YES=1; shift ;;
    -h|--help) usage 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[[ $EUID -eq 0 ]] || die "run as root (cryptsetup needs device-mapper)."
[[ -n "$DEVICE" && -b "$DEVICE" ]] || die "--device must be a block device."
[[ -n "$HOME_DIR" && -f "$HOME_DIR/archive.toml" ]] || die "--home must be an archive home (archive init first)."
[[ -n "$HEADER_BACKUP" ]] || die "--header-backup FILE is required (on removable media, not on DEVICE)."
[[ ! -e "$HEADER_BACKUP" ]] || die "$HEADER_BACKUP exists; choose a new file."
command -v cryptsetup >/dev/null || die "cryptsetup is not installed (apt-get install cryptsetup)."
[[ -e /dev/mapper/control ]] || die "no device-mapper here; use 'archive volume create' (gocryptfs) instead."
DATA="$HOME_DIR/data"
if [[ -d "$DATA" ]] && [[ -n "$(find "$DATA" -type f -print -quit)" ]]; then
  die "$DATA holds files; move them aside, provision, then copy them onto the mounted volume."
fi

if [[ $ASSUME_YES -ne 1 ]]; then
  read -r -p "ALL DATA ON $DEVICE WILL BE DESTROYED. Type the device name to continue: " answer
  [[ "$answer" == "$DEVICE" ]] || die "aborted."
fi

# LUKS2, AES-XTS 512-bit key, argon2id KDF; the volume key never leaves the header.
cryptsetup luksFormat --type luks2 --cipher aes-xts-plain64 --key-size 512 \
  --hash sha256 --pbkdf argon2id --label "$NAME" --verify-passphrase "$DEVICE"

# Slot 0: the operator passphrase just entered. Slot 1: a recovery passphrase kept
# sealed by the School (see LUKS.md); cryptsetup asks for an existing one, then the new.
echo "Add the RECOVERY passphrase (key slot 1):"
cryptsetup luksAddKey --key-slot 1 "$DEVICE"

cryptsetup luksHeaderBackup "$DEVICE" --header-backup-file "$HEADER_BACKUP"
chmod 0400 "$HEADER_BACKUP"

cryptsetup open --type luks2 "$DEVICE" "$NAME"
mkfs.ext4 -q -L "$NAME" "/dev/mapper/$NAME"
find "$DATA" -depth -mindepth 1 -type d -empty -delete 2>/dev/null || true
mkdir -p "$DATA"
mount -o nodev,nosuid,noexec "/dev/mapper/$NAME" "$DATA"
install -d -m 0700 "$DATA" "$DATA/index" "$DATA/storage" "$DATA/tmp" "$DATA/audit" "$DATA/quarantine"
owner="$(stat -c %U:%G "$HOME_DIR")"
chown -R "$owner" "$DATA"

cat <<EOT
LUKS2 volume ready: $DEVICE -> /dev/mapper/$NAME mounted on $DATA.
Header backup: $HEADER_BACKUP (store it offline; it plus any slot's passphrase opens the data).
Next:
  - set volume.kind = "luks" in $HOME_DIR/archive.toml
  - check: archive volume status --home $HOME_DIR   (kind luks, encrypted true)
  - boot-time unlock: see ops/LUKS.md (crypttab with a systemd credential or manual unlock)
EOT
