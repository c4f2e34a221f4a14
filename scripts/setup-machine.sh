#!/usr/bin/env bash
# Machine-level prerequisites (we run as root on a fresh Debian machine). Fails, never skips,
# when something cannot be had.
set -euo pipefail

need_apt=()
command -v gcloud >/dev/null || need_apt+=(google-cloud-cli google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator)
command -v java   >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v promtool >/dev/null || need_apt+=(prometheus)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing ${need_apt[*]}: install them (apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

for tool in gcloud java chromium promtool; do
  command -v "$tool" >/dev/null || { echo "setup: $tool is still missing after install" >&2; exit 1; }
done
# The emulators are gcloud components; a gcloud without them fails here with the reason.
gcloud emulators firestore --help >/dev/null 2>&1 || { echo "setup: gcloud lacks the Firestore emulator" >&2; exit 1; }
gcloud beta emulators pubsub --help >/dev/null 2>&1 || { echo "setup: gcloud lacks the Pub/Sub emulator" >&2; exit 1; }
