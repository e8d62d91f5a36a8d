"""About tab: version, where the files are, the last update check."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.viewmodels.errors import describe_error
from app.viewmodels.tones import Tone
from workerlib.control.handle import WorkerHandle
from workerlib.runtime.state import StatusSnapshot, UpdateInfo


@dataclass(frozen=True)
class AboutView:
    version: str = ""
    config_path: str = ""
    log_path: str = ""
    update: str = ""
    update_tone: Tone = "muted"
    download_url: str = ""
    checking: bool = False
    check_label: str = "Check for updates now"
    feed: str = ""


def update_text(info: UpdateInfo | None, *, auto: bool) -> tuple[str, Tone]:
    if info is None:
        when = "automatic checks are on" if auto else "automatic checks are off"
        return f"Not checked yet ({when}).", "muted"
    checked = time.strftime("%d %b %H:%M", time.localtime(info.checked_at))
    described = info.describe()
    text = described[:1].upper() + described[1:] + f" (checked {checked})"
    if info.error:
        return text, "error"
    return text, ("warn" if info.available else "ok")


class AboutViewModel:
    def __init__(self, service: WorkerHandle) -> None:
        self.service = service
        self.checking = False
        self.check_error = ""

    def view(self) -> AboutView:
        return self.render(self.service.status(), auto=self.service.config.auto_update_enabled,
                           feed=self.service.config.auto_update_feed)

    def render(self, snapshot: StatusSnapshot, *, auto: bool, feed: str = "") -> AboutView:
        text, tone = update_text(snapshot.last_update, auto=auto)
        if self.check_error:
            text, tone = f"Update check failed: {self.check_error}", "error"
        info = snapshot.last_update
        return AboutView(
            version=f"studio-worker {snapshot.version}",
            config_path=snapshot.config_path,
            log_path=snapshot.log_file,
            update=text,
            update_tone=tone,
            download_url=(info.download_url or "") if info and info.available else "",
            checking=self.checking,
            check_label="Checking…" if self.checking else "Check for updates now",
            feed=feed,
        )

    async def check_update(self) -> None:
        self.checking = True
        self.check_error = ""
        try:
            await self.service.check_update()
        except Exception as exc:  # check_update reports feed errors as data; this is the rest
            self.check_error = describe_error(exc)
        finally:
            self.checking = False
