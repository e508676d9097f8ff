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
# Trusted boot evidence: was Secure Boot on (the SecureBoot EFI variable: 4 bytes of attributes,
# then 1 = on), and with a TPM, PCR 7 (Secure Boot policy, measured by the firmware) and PCR 11
# (the UKI's sections, measured by systemd-stub). Said on the console and POSTed with the token.
SB=false
if [ -d /sys/firmware/efi ]; then
  EV=/sys/firmware/efi/efivars
  [ -n "$(ls $EV 2>/dev/null)" ] || mount -t efivarfs efivarfs $EV || say "efivarfs mount failed"
  SBVAR=$EV/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
  [ -f $SBVAR ] && [ "$(tail -c 1 $SBVAR | od -An -tu1 | tr -d ' ')" = 1 ] && SB=true
fi
say "secure-boot $SB"
PCRS=
for n in 7 11; do
  f=/sys/class/tpm/tpm0/pcr-sha256/$n
  [ -f $f ] || continue
  v=$(tr 'A-F' 'a-f' < $f | tr -d ' \n')
  say "pcr $n $v"
  PCRS="$PCRS${PCRS:+,}\"$n\":\"$v\""
done
[ -n "$PCRS" ] || say "no TPM"
ATTESTATION=$(field attestation)
BODY="{\"secure_boot\":$SB"
[ -z "$PCRS" ] || BODY="$BODY,\"pcrs\":{$PCRS}"
BODY="$BODY}"
if [ -z "$ATTESTATION" ]; then say "no attestation URL in the config"
elif post "$ATTESTATION" "$BODY"; then say "attestation reported"
else say "attestation report failed"; fi
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
