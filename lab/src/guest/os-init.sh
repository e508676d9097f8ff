#!/bin/busybox sh
# The lab's "installed OS": booted from disk, it registers with the provisioner the way a Kairos
# node phones home (bootState active_boot), then powers off. Seeing this is how the lab knows the
# machine came up from its disk and not from the network.
ROLE=OS
. /common.sh
eval "$(dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | tr -d '\000' | grep '^LAB')"
TOKEN=$LABTOKEN
say "booted from disk; registering with $LABURL"
BODY="{\"registrationToken\":\"$TOKEN\",\"machineID\":\"lab-$(echo $MAC | tr -d :)\",\"hostname\":\"$(hostname)\",\"agentVersion\":\"lab-os\",\"addresses\":[\"$ip\"],\"bootState\":\"active_boot\"}"
if post "$LABURL/api/v1/nodes/register" "$BODY"; then say "REGISTERED $(cat /tmp/post.out)"; else say "REGISTER FAILED"; fi
halt_now
