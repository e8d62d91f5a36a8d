"""View-models: plain Python over the worker facade, one per tab.

They hold the tab's own state (what the user typed, filters, toggles), run its
commands through a ``WorkerHandle`` (the worker in this process, or one attached
through the control API) and produce frozen ``*View`` values with display-ready text.
They import neither kivy nor kivymd, so they are tested
without a window; the screens copy a view into one Kivy property.
"""

from app.viewmodels.about import AboutView, AboutViewModel
from app.viewmodels.config import ConfigView, ConfigViewModel, FieldView, GroupView
from app.viewmodels.jobs import CurrentJobView, JobRow, JobsView, JobsViewModel
from app.viewmodels.logs import LogRow, LogsView, LogsViewModel
from app.viewmodels.status import StatusView, StatusViewModel

__all__ = [
    "AboutView",
    "AboutViewModel",
    "ConfigView",
    "ConfigViewModel",
    "CurrentJobView",
    "FieldView",
    "GroupView",
    "JobRow",
    "JobsView",
    "JobsViewModel",
    "LogRow",
    "LogsView",
    "LogsViewModel",
    "StatusView",
    "StatusViewModel",
]
