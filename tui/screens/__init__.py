"""The screens of the TUI by name: the app opens them (``open("diff", ...)``), the help lists
them in this order, and no screen imports another."""

from __future__ import annotations

from tui.screens.base import BaseScreen
from tui.screens.diff import DiffScreen
from tui.screens.distribution import DistributionScreen
from tui.screens.experiments import ExperimentsScreen
from tui.screens.live import LiveScreen
from tui.screens.sandbox import SandboxScreen
from tui.screens.tune import TuneScreen

SCREENS: dict[str, type[BaseScreen]] = {
    "live": LiveScreen,
    "diff": DiffScreen,
    "distribution": DistributionScreen,
    "tune": TuneScreen,
    "sandbox": SandboxScreen,
    "experiments": ExperimentsScreen,
}
