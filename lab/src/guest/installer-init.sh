#!/bin/busybox sh
# The lab's stand-in for a Hadron/Kairos installer: fetch this machine's config, report progress,
# write the "installed OS" image to /dev/vda (image-based install), hand the OS its token, reboot.
ROLE=INSTALLER
. /common.sh
fail() {
  say "FAILED: $1"
  [ -n "$TOKEN" ] && post "$PROGRESS" "{\"state\":\"failed\",\"reason\":\"$1\"}"
  halt_now
}
[ -n "$CONFIG_URL" ] || CONFIG_URL="$URL/config/$MAC"
say "config from $CONFIG_URL"
retry wget -q -O /tmp/config "$CONFIG_URL" || { say "config fetch FAILED"; halt_now; }
field() { sed -n "s/^  $1: //p" /tmp/config | tr -d '"' | head -1; }
TOKEN=$(field token); PROGRESS=$(field progress); LOGS=$(field logs); SYSLOG=$(field syslog)
IMG_EFI=$(field image_efi); IMG_BIOS=$(field image_bios)
[ -n "$TOKEN" ] || fail "no token in the config"
if [ -n "$SYSLOG" ]; then syslogd -R "$SYSLOG" -L; sleep 0.2; fi
log() { logger -t installer "$*"; say "$*"; }
progress() { post "$PROGRESS" "{\"state\":\"installing\",\"phase\":\"$1\",\"percent\":$2}" || say "progress report failed"; }
progress fetch-config 10
log "config fetched for $(sed -n 's/^hostname: //p' /tmp/config)"
if [ -d /sys/firmware/efi ]; then IMG=$IMG_EFI; FW=uefi; else IMG=$IMG_BIOS; FW=bios; fi
[ -b /dev/vda ] || fail "no disk /dev/vda"
log "writing the $FW image to /dev/vda"
progress write-image 30
wget -q -O - "$IMG" | dd of=/dev/vda bs=1M conv=fsync 2>/tmp/dd.err || fail "image write failed"
# The installed OS finds its credentials in sector 100 (free space before the first partition).
printf 'LABTOKEN=%s\nLABURL=%s\n' "$TOKEN" "$URL" | dd of=/dev/vda bs=512 seek=100 conv=notrunc,sync 2>/dev/null
sync
progress write-image 100
wget -q -O /dev/null --header "Authorization: Bearer $TOKEN" --post-data "$(tail -n 3 /tmp/dd.err)" "$LOGS"
post "$PROGRESS" '{"state":"installed"}' || fail "could not report installed"
log "install done, rebooting"
sleep 1
sync
say "rebooting"
reboot -f
