# shellcheck shell=bash
# Set-up for scripts/build-bundle: exactly what the `ui` extra of pyproject.toml needs
# (read from pyproject.toml, so the bundle and `pip install studio-worker[ui]` cannot
# drift apart) plus PyInstaller, in the build's virtualenv ($STUDIO_WORKER_VENV or
# .venv), and the system packages those wheels build from and the bundle runs on.
# Sourced after _setup.sh (say, ensure_apt, ensure_venv, VENV).

PYINSTALLER_VERSION=6.22.3

# Debian/Ubuntu names. Building: pycairo (kivymd -> materialshapes), PyGObject<3.51
# (pystray's gtk/appindicator tray with a real menu) and dbus-python (plyer's D-Bus
# notifications). Running: Mesa's GL (not bundled), the GTK and AppIndicator
# typelibs the tray loads, mtdev for a quiet Kivy start.
BUNDLE_APT_PACKAGES=(
  pkg-config libcairo2-dev libglib2.0-dev
  libgirepository1.0-dev gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1
  libdbus-1-dev
  libgl1 libegl1 libgl1-mesa-dri libmtdev1
)

# ui_requirements: the `ui` extra's requirement strings, one a line (markers kept).
ui_requirements() {
  "$VENV/bin/python" - "$REPO_ROOT/pyproject.toml" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["ui"]))
PY
}

ensure_bundle_tools() {
  if [ ! -x "$VENV/bin/python" ]; then
    ensure_venv "dev"
  fi
  if [ "$(uname -s)" = Linux ]; then ensure_apt "${BUNDLE_APT_PACKAGES[@]}"; fi
  local requirements
  requirements="$(mktemp)"
  ui_requirements > "$requirements"
  echo "pyinstaller==$PYINSTALLER_VERSION" >> "$requirements"
  # pip checks each requirement (markers included) and installs only what is missing.
  if ! "$VENV/bin/python" -m pip install --dry-run -r "$requirements" 2>/dev/null |
      grep -q "Would install"; then
    rm -f "$requirements"
    return 0
  fi
  say "installing the ui extra and PyInstaller into $VENV"
  "$VENV/bin/python" -m pip install -q -r "$requirements"
  rm -f "$requirements"
}

# check_bundle_tools: the bundle would silently lose its tray menu or notifications
# without these (pystray falls back to an icon without a menu; plyer to notify-send).
check_bundle_tools() {
  [ "$(uname -s)" = Linux ] || return 0
  "$VENV/bin/python" - <<'PY'
import importlib
import importlib.util
import sys

missing = []
# gi and dbus are imported (a half-built PyGObject or dbus-python fails here); the GUI
# packages only located (importing kivymd opens a window, pystray needs a display).
for module in ("gi", "dbus"):
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001  (any failure means a broken bundle)
        missing.append(f"{module} ({type(exc).__name__}: {exc})")
for module in ("kivy", "kivymd", "pystray", "plyer"):
    if importlib.util.find_spec(module) is None:
        missing.append(module)
if missing:
    sys.exit("build-bundle: the build environment lacks " + ", ".join(missing))
PY
}
