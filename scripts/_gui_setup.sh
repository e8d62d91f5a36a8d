# System packages the desktop app's tests need (tests/gui). Sourced by _setup.sh,
# which defines ensure_apt. Debian/Ubuntu names.
#
#   libcairo2-dev pkg-config libglib2.0-dev  build pycairo (kivymd -> materialshapes)
#   libgl1 libegl1 libgl1-mesa-dri           Mesa GL: Kivy's offscreen and X windows
#   xvfb xauth                               xvfb-run, for the whole-screen screenshots
#   libmtdev1 xclip                          a quiet Kivy start (no MTDev traceback,
#                                            a clipboard provider)

ensure_gui_system_packages() {
  ensure_apt libcairo2-dev pkg-config libglib2.0-dev \
    libgl1 libegl1 libgl1-mesa-dri \
    xvfb xauth \
    libmtdev1 xclip
}
