"""Politeness rules: what stops the worker claiming while the person at the PC needs it.

One small interface per signal (idle time, running programs, full-screen window, GPU
health), a snooze kept in the state folder, weekly schedules, and ``Policy``, the one
object the claim loop asks (``policy.hold_reason()``).
"""

from workerlib.policy.gpu import GpuHealth, GpuSampler
from workerlib.policy.hold import RULE_ORDER, Hold
from workerlib.policy.monitor import Policy, PolicyProbes
from workerlib.policy.snooze import SnoozeStore

__all__ = ["RULE_ORDER", "GpuHealth", "GpuSampler", "Hold", "Policy", "PolicyProbes",
           "SnoozeStore"]
