#!/bin/sh
# make_test_certs.sh DIR - a throwaway private CA and a server certificate for
# "localhost" (DNS name only: https://127.0.0.1 does not match it) signed by that
# CA, for the mock's TLS listener.  Tests make them at run time, so no key is
# ever committed.  Writes DIR/ca.pem, DIR/server.pem and DIR/server.key.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# shellcheck disable=SC2086
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 \
	-subj "/CN=bulkops test CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
# shellcheck disable=SC2086
openssl req $ec -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost" "basicConstraints=CA:FALSE" \
	"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	-out server.pem -days 2 -extfile server.ext 2>/dev/null
rm -f server.csr server.ext ca.srl
