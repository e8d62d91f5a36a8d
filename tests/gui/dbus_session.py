"""A private D-Bus session bus, and a fake notification service on it that records calls.

The bus has no service files, so nothing is ever auto-started on it: a name nobody
owns fails at once, as on a desktop without a notification daemon.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusDict,
    DBusInt32,
    DBusSignature,
    DBusStr,
    DBusUInt32,
)
from dbus_fast.service import ServiceInterface, dbus_method

DBusStrList = Annotated[list[str], DBusSignature("as")]
DBusStr4 = Annotated[list[str], DBusSignature("ssss")]
NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def have_dbus_daemon() -> bool:
    return shutil.which("dbus-daemon") is not None


class SessionBus:
    """``dbus-daemon --session`` on a socket in ``directory``, with no service files."""

    def __init__(self, directory: Path, env: dict[str, str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "session.conf"
        config.write_text(BUS_CONFIG.format(dir=directory))
        self.process = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--print-address=1", f"--config-file={config}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env if env is not None else dict(os.environ))
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()
        if not self.address:
            self.process.kill()
            raise RuntimeError("dbus-daemon did not start")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass(frozen=True)
class NotifyCall:
    app_name: str
    replaces_id: int
    app_icon: str
    summary: str
    body: str
    actions: list[str]
    hints: dict[str, Any]
    expire_timeout: int


class _Notifications(ServiceInterface):  # type: ignore[misc]
    def __init__(self, calls: list[NotifyCall]) -> None:
        super().__init__(NAME)
        self.calls = calls

    @dbus_method()
    def Notify(self, app_name: DBusStr, replaces_id: DBusUInt32, app_icon: DBusStr,
               summary: DBusStr, body: DBusStr, actions: DBusStrList,
               hints: DBusDict, expire_timeout: DBusInt32) -> DBusUInt32:
        self.calls.append(NotifyCall(app_name, replaces_id, app_icon, summary, body,
                                     list(actions), dict(hints), expire_timeout))
        return len(self.calls)

    @dbus_method()
    def GetCapabilities(self) -> DBusStrList:
        return ["body"]

    @dbus_method()
    def GetServerInformation(self) -> DBusStr4:
        return ["fake-notifications", "studio-worker tests", "1.0", "1.2"]

    # No return annotation: dbus-fast would read "-> None" as a missing signature.
    @dbus_method()
    def CloseNotification(self, notification_id: DBusUInt32):  # type: ignore[no-untyped-def]
        return None


class FakeNotificationService:
    """org.freedesktop.Notifications on ``address``, served from a thread of its own
    (the code under test makes blocking D-Bus calls)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.calls: list[NotifyCall] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fake-notifications")
        self._thread.start()
        self._bus: MessageBus | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> None:
        """Own the name (again): notifications are delivered from now on."""
        async def go() -> None:
            bus = await MessageBus(bus_address=self.address).connect()
            bus.export(PATH, _Notifications(self.calls))
            await bus.request_name(NAME)
            self._bus = bus

        self._run(go())

    def stop(self) -> None:
        """Leave the bus: notifications fail, as with no notification daemon."""
        async def go() -> None:
            if self._bus is not None:
                self._bus.disconnect()
                await self._bus.wait_for_disconnect()
                self._bus = None

        self._run(go())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
