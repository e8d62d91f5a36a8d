# shellcheck shell=bash
# Set-up for scripts/build-bundle: the GUI packages and PyInstaller in the project's
# virtualenv, each installed only when missing. Sourced after _setup.sh (say,
# ensure_apt, ensure_venv, VENV).

PYINSTALLER_VERSION=6.22.3
# The ui extra of pyproject.toml, pinned the same way.
BUNDLE_UI_PACKAGES=(kivy==2.3.1 kivymd==2.0.0 pystray==0.19.5 plyer==2.1.0)

ensure_bundle_tools() {
  if [ ! -x "$VENV/bin/python" ]; then
    ensure_venv "dev"
  fi
  # Kivy's PyInstaller hook opens a (offscreen) window, and the bundle's window needs
  # the system's Mesa: libGL/libEGL are not bundled.
  if [ "$(uname -s)" = Linux ]; then ensure_apt libgl1 libegl1 libgl1-mesa-dri libmtdev1; fi
  local missing=() spec name version
  for spec in "${BUNDLE_UI_PACKAGES[@]}" "pyinstaller==$PYINSTALLER_VERSION"; do
    name="${spec%%==*}" version="${spec##*==}"
    [ "$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')" = "$version" ] ||
      missing+=("$spec")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  # kivymd -> materialshapes -> pycairo, which always compiles on Linux.
  if [ "$(uname -s)" = Linux ]; then ensure_apt libcairo2-dev pkg-config libglib2.0-dev; fi
  say "installing ${missing[*]} into $VENV"
  "$VENV/bin/python" -m pip install -q "${missing[@]}"
}
