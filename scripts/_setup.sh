# Shared set-up for scripts/demo and scripts/test: system packages, the virtualenv,
# the project's pip install. Idempotent: each step is skipped when already done.
# Sourced, not run.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STUDIO_WORKER_VENV:-$REPO_ROOT/.venv}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "need root (or sudo) to run: $*" >&2; return 1
  fi
}

# ensure_apt PKG...: installs the Debian packages that are not installed yet.
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "apt-get not found: install ${missing[*]} by hand" >&2; return 1; }
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A Python >= 3.11 with venv; Debian's python3 when the machine has none.
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

ensure_python() {
  PY="$(find_python)" && return 0
  ensure_apt python3 python3-venv python3-dev python3-pip
  PY="$(find_python)" || { echo "Python 3.11 or newer with venv is required" >&2; return 1; }
}

# ensure_venv EXTRAS: creates the venv and pip-installs the project with the extras
# (comma-separated), again only when pyproject.toml changed or an extra is missing.
ensure_venv() {
  local extras="$1"
  ensure_python
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.studio-worker-installed"
  local hash have=""
  hash="$(sha256sum < "$REPO_ROOT/pyproject.toml" | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$hash" ]; then
    have="$(sed -n 2p "$stamp")"
  fi
  local missing=0 extra
  for extra in ${extras//,/ }; do
    case ",$have," in *",$extra,"*) ;; *) missing=1 ;; esac
  done
  if [ "$missing" -eq 1 ]; then
    local union
    union="$(printf '%s\n' ${have//,/ } ${extras//,/ } | sort -u | paste -sd, -)"
    say "installing studio-worker[$union] into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$REPO_ROOT[$union]"
    printf '%s\n%s\n' "$hash" "$union" > "$stamp"
  fi
}

source "$REPO_ROOT/scripts/_gui_setup.sh"
