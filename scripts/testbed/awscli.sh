#!/usr/bin/env bash
# The AWS CLI (PyPI `awscli`, pinned) in a cached virtualenv of its own: tests pre-generate KMS keys with
# it the way an operator does ("keys made with the AWS CLI, not with keyport": test/canton, test/cli/
# register-check.test.ts). Its own venv so that its botocore pin never changes the one moto runs on.
# Nothing runs in the background: `start` installs if needed and prints the path of the `aws` program.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

PIN=(awscli==1.45.11)
VENV="$KEYPORT_CACHE/venv-awscli"
STAMP="$VENV/.keyport-installed-$(echo "${PIN[*]}" | md5sum | cut -c1-12)"

install() {
  [[ -f $STAMP ]] && return 0
  tb_install_lock awscli
  [[ -f $STAMP ]] && return 0
  command -v python3 >/dev/null || tb_unavailable "awscli: python3 is not installed"
  python3 -c 'import venv, ensurepip' 2>/dev/null || tb_apt python3-venv || tb_unavailable "awscli: python3-venv is missing"
  tb_log "installing ${PIN[*]} into $VENV"
  local v; v=$(tb_venv awscli)
  "$v/bin/pip" install -q --disable-pip-version-check "${PIN[@]}" >&2 || tb_unavailable "awscli: pip install failed"
  "$v/bin/aws" --version >/dev/null 2>&1 || tb_unavailable "awscli: aws --version failed after install"
  touch "$STAMP"
}

env_lines() {
  echo "AWS_CLI=$VENV/bin/aws"
}

case "${1:-}" in
  install) install ;;
  start) install; env_lines ;;
  stop) ;;
  env) [[ -f $STAMP ]] && env_lines || { echo "awscli: not installed" >&2; exit 1; } ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
