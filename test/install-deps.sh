#!/usr/bin/env bash
# Installs what building and testing bulkops needs, from Debian's packages.
# Idempotent: does nothing when everything is already there.  Needs root.
# Extra package names given as arguments are installed too.
set -euo pipefail
pkgs=(build-essential postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev
      libssl-dev postgresql-15-cron postgresql-15-pgtap libipc-run-perl python3 curl openssl
      prometheus-postgres-exporter "$@")
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]}; run this script as root" >&2
		exit 1
	fi
	echo "installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# where systemd runs, the exporter's package starts a service of its own on
	# every address; the tests start theirs on loopback, so it is stopped
	if [[ " ${missing[*]} " == *" prometheus-postgres-exporter "* ]] && [ -d /run/systemd/system ]; then
		systemctl disable --now prometheus-postgres-exporter >/dev/null 2>&1 || true
	fi
fi
