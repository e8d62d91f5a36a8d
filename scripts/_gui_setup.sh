# System packages the desktop app's tests need (tests/gui). Sourced by _setup.sh,
# which defines ensure_apt. Debian/Ubuntu names.
#
#   libcairo2-dev pkg-config libglib2.0-dev  build pycairo (kivymd -> materialshapes)
#   libgl1 libegl1 libgl1-mesa-dri           Mesa GL: Kivy's offscreen and X windows
#   xvfb xauth                               xvfb-run, for the whole-screen screenshots
#   libmtdev1 xclip                          a quiet Kivy start (no MTDev traceback,
#                                            a clipboard provider)
#   libgirepository1.0-dev gir1.2-gtk-3.0    build PyGObject (<3.51) and run pystray's
#   gir1.2-ayatanaappindicator3-0.1          gtk/appindicator tray icons (real menus)
#   libdbus-1-dev                            build dbus-python: plyer's notifications
#                                            report delivery failures only through it
#   dbus trayer xdotool                      the tray tests: a private session bus, a
#                                            tray host under Xvfb, clicks on the menu
#   libxss1                                  the X11 idle time (only_when_idle), read
#                                            through libXss, tested under Xvfb + xdotool

ensure_gui_system_packages() {
  ensure_apt libcairo2-dev pkg-config libglib2.0-dev \
    libgl1 libegl1 libgl1-mesa-dri \
    xvfb xauth \
    libmtdev1 xclip \
    libgirepository1.0-dev gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 \
    libdbus-1-dev \
    dbus trayer xdotool \
    libxss1
}
