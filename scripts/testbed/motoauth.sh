#!/usr/bin/env bash
# A second moto server (same pinned moto[server] venv as moto.sh) that REALLY checks credentials and IAM
# policies, for the awskms: driver's AUTH / PERMISSION paths (test/kms/aws-auth.test.ts).
#
# moto enforces authentication once its request counter reaches INITIAL_NO_AUTH_ACTION_COUNT
# (moto/core/authorization.py, ActionAuthenticatorMixin). The server starts with a count no setup can
# reach, this script creates two IAM users with access keys through moto's IAM API, then switches
# enforcement on with POST /moto-api/reset-auth "0" (moto/moto_api/_internal/responses.py: sets the
# threshold to 0 and the counter to 0), and checks that an unknown access key is refused.
# What moto then checks on every KMS (and IAM, ...) request (moto/iam/access_control.py, IAMRequest):
#  - the access key id of the SigV4 Authorization header must belong to an IAM user (or an assumed
#    role) in moto, else InvalidClientTokenId (HTTP 403);
#  - the SigV4 signature is recomputed with that user's secret (botocore SigV4Auth over the signed
#    headers and the body), a mismatch is SignatureDoesNotMatch (HTTP 403);
#  - the user's inline / attached / group policies must Allow "kms:<Action>" (Action wildcards, an
#    explicit Deny wins; Resource is matched against "*" because moto's KMS names no resource, so
#    per-key policies and key policies are NOT evaluated), else AccessDenied (HTTP 403).
# Limits: the errors are moto's generic XML bodies (HTTP 403, no X-Amzn-ErrorType header) where real
# AWS KMS answers JSON UnrecognizedClientException / InvalidSignatureException / AccessDeniedException
# (the driver decodes both, src/kms/aws/common.ts decodeXmlErrors); the request date (X-Amz-Date) is
# not checked against the clock, and the credential scope's region/service are taken from the request
# itself, not checked against the endpoint; policy Conditions see no request context; anyone who can
# reach the port can switch enforcement off with /moto-api/reset-auth (`start` switches it on again).
#
# Users (created at start, credentials kept in $STATE/creds.env, 0600):
#  - keyport-admin: inline policy Allow kms:* on *
#  - keyport-restricted: inline policy Allow kms:Decrypt, kms:DescribeKey, kms:GetPublicKey on * (no
#    ListKeys, CreateKey, TagResource, Sign, Encrypt)
#  - keyport-canton: exactly the six actions Canton's KMS guide lists for a node (kms:CreateKey,
#    kms:TagResource, kms:Decrypt, kms:Sign, kms:DescribeKey, kms:GetPublicKey), nothing else
#  - keyport-canton-xacct: the four of them a node whose keys are registered by ARN needs (kms:Decrypt,
#    kms:Sign, kms:DescribeKey, kms:GetPublicKey): no CreateKey, TagResource, ListKeys
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

MOTO_SH="$(dirname "${BASH_SOURCE[0]}")/moto.sh"
STATE="$TB_STATE/motoauth"
PIDFILE="$STATE/moto.pid"
CREDS="$STATE/creds.env"
VENV="$KEYPORT_CACHE/venv-moto"
REGION=us-east-1

install() { bash "$MOTO_SH" install; }

env_lines() {
  echo "MOTOAUTH_ENDPOINT=http://127.0.0.1:$(cat "$STATE/port")"
  echo "MOTOAUTH_REGION=$REGION"
  cat "$CREDS"
  echo "MOTOAUTH_LOG=$STATE/server.log"
}

# setup | probe: run with the venv's python (boto3 comes with moto)
py() {
  MOTOAUTH_ENDPOINT="http://127.0.0.1:$(cat "$STATE/port")" MOTOAUTH_REGION=$REGION MOTOAUTH_CREDS="$CREDS" \
    "$VENV/bin/python" - "$1" <<'EOF'
import json, os, sys, urllib.request
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ep, region, creds = os.environ["MOTOAUTH_ENDPOINT"], os.environ["MOTOAUTH_REGION"], os.environ["MOTOAUTH_CREDS"]
cfg = Config(retries={"max_attempts": 1})

def client(svc, akid="setup", secret="setup"):
    return boto3.client(svc, endpoint_url=ep, region_name=region, aws_access_key_id=akid, aws_secret_access_key=secret, config=cfg)

def enforce():
    # a form content type would make flask eat the body: request.data would be empty
    req = urllib.request.Request(ep + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as r:
        json.load(r)

def refused():
    """True if moto refuses an unknown access key (auth enforced)"""
    try:
        client("kms", "AKIAKEYPORTUNKNOWN00", "wrong").list_keys(Limit=1)
        return False
    except ClientError as e:
        # moto answers its generic XML error body (botocore's JSON parser leaves it in Message)
        err = e.response.get("Error", {})
        return "InvalidClientTokenId" in (err.get("Code", "") + err.get("Message", ""))

if sys.argv[1] == "setup":
    iam = client("iam")
    lines = []
    canton = ["kms:CreateKey", "kms:TagResource", "kms:Decrypt", "kms:Sign", "kms:DescribeKey", "kms:GetPublicKey"]
    # cross-account keys registered by ARN: Canton's list without CreateKey and TagResource
    xacct = ["kms:Decrypt", "kms:Sign", "kms:DescribeKey", "kms:GetPublicKey"]
    for tag, user, actions in (("ADMIN", "keyport-admin", "kms:*"), ("RESTRICTED", "keyport-restricted", ["kms:Decrypt", "kms:DescribeKey", "kms:GetPublicKey"]), ("CANTON", "keyport-canton", canton), ("XACCT", "keyport-canton-xacct", xacct)):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=f"{user}-kms", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        k = iam.create_access_key(UserName=user)["AccessKey"]
        lines += [f"MOTOAUTH_{tag}_USER={user}", f"MOTOAUTH_{tag}_ACCESS_KEY_ID={k['AccessKeyId']}", f"MOTOAUTH_{tag}_SECRET_ACCESS_KEY={k['SecretAccessKey']}"]
    fd = os.open(creds + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    enforce()
    if not refused():
        sys.exit("auth is not enforced after reset-auth")
    # the admin's keys work under enforcement
    client("kms", lines[1].split("=", 1)[1], lines[2].split("=", 1)[1]).list_keys(Limit=1)
    os.replace(creds + ".tmp", creds)
elif sys.argv[1] == "probe":
    if not refused():
        enforce()  # someone switched enforcement off: on again
        if not refused():
            sys.exit("auth is not enforced")
EOF
}

start() {
  install
  mkdir -p "$STATE"
  tb_lock motoauth
  if tb_pid_alive "$PIDFILE" && [[ -f $STATE/port && -f $CREDS ]] && grep -q MOTOAUTH_XACCT_USER "$CREDS" && tb_port_open "$(cat "$STATE/port")" && py probe >&2; then
    env_lines
    return 0
  fi
  tb_stop_pid "$PIDFILE"
  rm -f "$CREDS"
  local port; port=$(tb_port_for "$STATE")
  echo "$port" >"$STATE/port"
  # no setup reaches this count; enforcement is switched on by reset-auth once the users exist
  INITIAL_NO_AUTH_ACTION_COUNT=1000000 tb_daemon "$PIDFILE" "$STATE/server.log" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
  if ! tb_wait_port "$port" 60; then
    tail -5 "$STATE/server.log" >&2 || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "motoauth: moto_server did not start on 127.0.0.1:$port"
  fi
  if ! py setup >&2; then
    tail -5 "$STATE/server.log" >&2 || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "motoauth: creating the IAM users or enforcing auth failed"
  fi
  env_lines
}

stop() {
  tb_lock motoauth
  tb_stop_pid "$PIDFILE"
  rm -f "$CREDS"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) tb_pid_alive "$PIDFILE" && [[ -f $CREDS ]] && env_lines || { echo "motoauth: not running" >&2; exit 1; } ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
