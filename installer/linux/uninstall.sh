#!/usr/bin/env bash
# Remove what install.sh put in place (and the login entry and user service the app
# may have added, when they start this installation).
#
#   ./uninstall.sh [--purge] [--prefix DIR]
#
# Your settings, registration and logs stay unless --purge is given (then
# ~/.config/minis-studio-worker, ~/.local/state/minis-studio-worker and
# ~/.cache/minis-studio-worker go too). Safe to run twice.
set -euo pipefail

APP_ID=studio-worker
EXE=StudioWorker
DATA_ID=minis-studio-worker
UNIT=minis-studio-worker.service

usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "uninstall.sh: $*" >&2; exit 1; }

purge=0 prefix="${HOME:?HOME is not set}/.local"
while [ $# -gt 0 ]; do
  case "$1" in
    --purge) purge=1 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a path"; prefix="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
config_home="${XDG_CONFIG_HOME:-$HOME/.config}"
dest="$prefix/opt/$APP_ID"
exe_path="$dest/$EXE"
removed=()

remove() {  # remove PATH... that exist, and say so
  local path
  for path in "$@"; do
    if [ -e "$path" ] || [ -L "$path" ]; then rm -rf "$path"; removed+=("$path"); fi
  done
}

ours() { [ -f "$1" ] && grep -qF "$exe_path" "$1"; }

# The headless service (studio-worker install-service) of this installation.
unit_file="$config_home/systemd/user/$UNIT"
if ours "$unit_file"; then
  if [ -x "$exe_path" ]; then
    "$exe_path" uninstall-service >/dev/null 2>&1 || true
  fi
  if [ -f "$unit_file" ]; then
    systemctl --user disable --now "$UNIT" >/dev/null 2>&1 || true
    remove "$unit_file"
  else
    removed+=("$unit_file")
  fi
fi

# The login entry, whether install.sh --autostart or the app's setting wrote it.
if ours "$config_home/autostart/$APP_ID.desktop"; then
  remove "$config_home/autostart/$APP_ID.desktop"
fi

if [ -L "$prefix/bin/$APP_ID" ] && [ "$(readlink "$prefix/bin/$APP_ID")" = "$exe_path" ]; then
  remove "$prefix/bin/$APP_ID"
fi
remove "$data_home/applications/$APP_ID.desktop" \
  "$data_home/icons/hicolor/256x256/apps/$APP_ID.png" \
  "$data_home/icons/hicolor/512x512/apps/$APP_ID.png"
if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database -q "$data_home/applications" 2>/dev/null || true
fi

# The bundle, and whatever an interrupted install or update left beside it.
remove "$dest" "$dest.old" "$dest".old-* "$dest".replaced-* \
  "$(dirname "$dest")/.$APP_ID.install-"* "$(dirname "$dest")/.$APP_ID.update-"*

if [ "$purge" -eq 1 ]; then
  remove "$config_home/$DATA_ID" "${XDG_STATE_HOME:-$HOME/.local/state}/$DATA_ID" \
    "${XDG_CACHE_HOME:-$HOME/.cache}/$DATA_ID"
fi

if [ ${#removed[@]} -eq 0 ]; then
  echo "Studio Worker is not installed in $dest: nothing to remove"
else
  echo "removed:"
  printf '  %s\n' "${removed[@]}"
fi
if [ "$purge" -eq 0 ] && [ -d "$config_home/$DATA_ID" ]; then
  echo "kept your settings in $config_home/$DATA_ID (--purge removes them)"
fi
