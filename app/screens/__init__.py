"""One thin screen per tab, in tab order."""

from app.screens.about import AboutScreen
from app.screens.base import TabScreen
from app.screens.config import ConfigScreen
from app.screens.jobs import JobsScreen
from app.screens.logs import LogsScreen
from app.screens.stats import StatsScreen
from app.screens.status import StatusScreen

SCREENS: tuple[type[TabScreen], ...] = (
    StatusScreen, JobsScreen, StatsScreen, ConfigScreen, LogsScreen, AboutScreen,
)

__all__ = ["SCREENS", "AboutScreen", "ConfigScreen", "JobsScreen", "LogsScreen", "StatsScreen",
           "StatusScreen", "TabScreen"]
