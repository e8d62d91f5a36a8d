"""The local control API: how the window, the tray and the CLI reach a running worker."""
