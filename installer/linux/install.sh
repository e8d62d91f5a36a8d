#!/usr/bin/env bash
# Install Studio Worker for the current user; no root needed.
#
#   ./install.sh [--autostart] [--from BUNDLE] [--prefix DIR]
#
# BUNDLE is the folder holding the StudioWorker executable (one-file, or one-folder
# with _internal/ beside it) or a StudioWorker-linux-*.tar.gz; by default the folder
# this script is in (the unpacked release). What it writes, with the default prefix:
#
#   ~/.local/opt/studio-worker/            the bundle (replaced atomically on reinstall)
#   ~/.local/bin/studio-worker             a symlink to it (a pip-installed one is kept)
#   ~/.local/share/applications/studio-worker.desktop and the icon in ~/.local/share/icons
#   ~/.config/autostart/studio-worker.desktop   with --autostart only (the same entry the
#                                               app writes for "Start at login")
#
# Your settings (~/.config/minis-studio-worker) are never touched. Undo it all with
# ~/.local/opt/studio-worker/uninstall.sh. Running it again upgrades in place.
set -euo pipefail

APP_ID=studio-worker
EXE=StudioWorker
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }

source_arg="" autostart=0 prefix="${HOME:?HOME is not set}/.local"
while [ $# -gt 0 ]; do
  case "$1" in
    --autostart) autostart=1 ;;
    --from) [ $# -ge 2 ] || die "--from needs a path"; source_arg="$2"; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a path"; prefix="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
config_home="${XDG_CONFIG_HOME:-$HOME/.config}"
dest="$prefix/opt/$APP_ID"
bindir="$prefix/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# -- find the bundle ------------------------------------------------------------------------
bundle_in() {  # the folder under $1 (itself or one level down) holding the executable
  local dir
  for dir in "$1" "$1"/*/; do
    dir="${dir%/}"
    if [ -f "$dir/$EXE" ] && [ -x "$dir/$EXE" ]; then printf '%s\n' "$dir"; return 0; fi
  done
  return 1
}

src="${source_arg:-$HERE}"
if [ -f "$src" ]; then
  case "$src" in
    *.tar.gz|*.tgz) tar -xzf "$src" -C "$work" || die "could not unpack $src" ;;
    *) die "$src is not a folder or a .tar.gz" ;;
  esac
  src="$work"
fi
[ -d "$src" ] || die "$src does not exist"
bundle="$(bundle_in "$src")" || die "no $EXE executable in $src (pass --from BUNDLE)"
bundle="$(cd "$bundle" && pwd)"

version="$("$bundle/$EXE" --version 2>/dev/null)" || die "$bundle/$EXE does not run here"

find_icon() {
  local candidate
  for candidate in "$bundle/$APP_ID.png" "$bundle/_internal/assets/$APP_ID.png" \
      "$HERE/$APP_ID.png" "$HERE/../../assets/$APP_ID.png"; do
    if [ -f "$candidate" ]; then printf '%s\n' "$candidate"; return 0; fi
  done
  return 1
}
icon="$(find_icon)" || icon=""

# -- the bundle: staged next to the destination, then swapped in --------------------------------
mkdir -p "$(dirname "$dest")"
if [ "$bundle" != "$dest" ]; then
  staging="$(mktemp -d "$(dirname "$dest")/.$APP_ID.install-XXXXXX")"
  cp -a "$bundle/." "$staging/"
  [ -f "$staging/uninstall.sh" ] || cp "$HERE/uninstall.sh" "$staging/uninstall.sh"
  [ -f "$staging/install.sh" ] || cp "$HERE/install.sh" "$staging/install.sh"
  if [ -n "$icon" ] && [ ! -f "$staging/$APP_ID.png" ]; then cp "$icon" "$staging/$APP_ID.png"; fi
  chmod 755 "$staging" "$staging/$EXE" "$staging/uninstall.sh" "$staging/install.sh"
  if [ -e "$dest" ]; then
    mv "$dest" "$dest.replaced-$$"
    mv "$staging" "$dest"
    rm -rf "$dest.replaced-$$"
  else
    mv "$staging" "$dest"
  fi
fi
# What an earlier self-update may have left (the updater also removes it at start).
rm -rf "$dest.old" "$dest".old-* "$(dirname "$dest")/.$APP_ID.update-"*
exe_path="$dest/$EXE"
[ -f "$dest/$APP_ID.png" ] && icon="$dest/$APP_ID.png"

# -- the command ------------------------------------------------------------------------------------
mkdir -p "$bindir"
link="$bindir/$APP_ID"
if [ -L "$link" ] || [ ! -e "$link" ]; then
  ln -sfn "$exe_path" "$link"
  link_note="$link -> $exe_path"
else
  link_note="$link exists and is not ours (a pip install?): left as it is"
fi

# -- menu entry and icon ------------------------------------------------------------------------------
desktop_exec_quote() {  # the Desktop Entry spec's Exec quoting (and its string escaping)
  local arg="$1" reserved=$'[[:space:]"\'\\\\<>~|&;$*?#()`]'
  if [[ "$arg" =~ $reserved ]]; then
    arg="${arg//\\/\\\\}"; arg="${arg//\"/\\\"}"; arg="${arg//\`/\\\`}"; arg="${arg//\$/\\\$}"
    arg="\"$arg\""
    arg="${arg//\\/\\\\}"  # string-level escaping of every backslash
  fi
  printf '%s' "${arg//%/%%}"
}

mkdir -p "$data_home/applications"
{
  echo "[Desktop Entry]"
  echo "Type=Application"
  echo "Version=1.4"
  echo "Name=Studio Worker"
  echo "GenericName=GPU worker"
  echo "Comment=Lend your GPU to the minis.gg studio"
  echo "Exec=$(desktop_exec_quote "$exe_path")"
  echo "TryExec=$exe_path"
  echo "Icon=$APP_ID"
  echo "Terminal=false"
  echo "Categories=Utility;"
  echo "Keywords=GPU;minis;studio;worker;"
  echo "StartupNotify=true"
} > "$data_home/applications/$APP_ID.desktop.tmp"
mv "$data_home/applications/$APP_ID.desktop.tmp" "$data_home/applications/$APP_ID.desktop"

if [ -n "$icon" ]; then
  for size in 256x256 512x512; do
    mkdir -p "$data_home/icons/hicolor/$size/apps"
    cp "$icon" "$data_home/icons/hicolor/$size/apps/$APP_ID.png"
  done
fi
if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database -q "$data_home/applications" 2>/dev/null || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
  gtk-update-icon-cache -q -t "$data_home/icons/hicolor" 2>/dev/null || true
fi

# -- start at login (optional) ------------------------------------------------------------------------
shlex_quote() {  # Python's shlex.quote, as workerlib/autostart.py writes Exec=
  local arg="$1"
  if [[ -n "$arg" && "$arg" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then printf '%s' "$arg"
  else printf "'%s'" "${arg//\'/\'\"\'\"\'}"
  fi
}

autostart_file="$config_home/autostart/$APP_ID.desktop"
if [ "$autostart" -eq 1 ]; then
  mkdir -p "$config_home/autostart"
  # Byte for byte what the app writes for "Start at login", so it sees no change.
  printf '%s\n' "[Desktop Entry]" "Type=Application" "Name=Studio Worker" \
    "Comment=Lend your GPU to the minis.gg studio" \
    "Exec=$(shlex_quote "$exe_path") ui --autostart" "Icon=$APP_ID" "Terminal=false" \
    "X-GNOME-Autostart-enabled=true" > "$autostart_file.tmp"
  mv "$autostart_file.tmp" "$autostart_file"
fi

# -- summary ----------------------------------------------------------------------------------------
echo "installed ${version#studio-worker } in $dest"
echo "  command:    $link_note"
echo "  menu entry: $data_home/applications/$APP_ID.desktop"
if [ "$autostart" -eq 1 ]; then echo "  at login:   $autostart_file"; fi
case ":${PATH:-}:" in
  *":$bindir:"*) ;;
  *) echo "note: $bindir is not on your PATH; run $exe_path directly or add it" ;;
esac
echo "If Studio Worker is running, quit and start it again to use this version."
echo "Uninstall: $dest/uninstall.sh (keeps your settings; --purge removes them too)"
