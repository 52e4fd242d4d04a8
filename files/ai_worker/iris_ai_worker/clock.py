"""This host's wall clock against IRIS's, measured from the ``Date`` header of IRIS's answers.

IRIS stamps ``Date`` (one-second resolution) at some instant between the moment the worker sent the
request and the moment the answer came back. So the offset ``local - IRIS`` lies in
``(sent - date - 1, answered - date]``. The worker takes the smallest offset that interval allows
as its *proven* skew: a host whose proven skew exceeds half of AI_WORKER_CLOCK_SKEW (so that two
workers that both pass are at most AI_WORKER_CLOCK_SKEW apart) refuses to claim until it is fixed.
The middle of the interval is the estimate used to read IRIS's clock (``iris_now``).
"""
import time


class ClockCheck:
    def __init__(self, limit, log, wall=time.time):
        self.limit = limit
        self.log = log
        self.wall = wall
        self.offset = 0.0  # estimate of local - IRIS, in seconds
        self.skew = 0.0  # proven |local - IRIS|
        self.measured_at = None  # local wall time of the last measurement
        self.ok = True
        self._reported = None  # the last state that was logged: None (nothing yet), True or False

    def update(self, sample):
        """Take one measurement (sent, answered, date) as IrisClient.clock_sample keeps it; None is ignored."""
        if sample is None or sample[1] == self.measured_at:
            return
        sent, answered, date = sample
        low, high = sent - date - 1.0, answered - date
        self.offset = (low + high) / 2
        self.skew = 0.0 if low <= 0.0 <= high else min(abs(low), abs(high))
        self.measured_at = answered
        self.ok = self.skew <= self.limit
        if self._reported is None:
            self.log.info(f"clock: {self.offset:+.1f}s from IRIS's (proven at least {self.skew:.1f}s, "
                          f"allowed {self.limit:g}s)")
        if self.ok is not self._reported:
            if not self.ok:
                self.log.error(f"clock: this host's clock is at least {self.skew:.1f}s off IRIS's (allowed "
                               f"{self.limit:g}s, half of AI_WORKER_CLOCK_SKEW): claiming nothing until it is "
                               "fixed (check NTP); claims stamped with a wrong clock would look fresh or stale "
                               "to the other workers at the wrong time")
            elif self._reported is False:
                self.log.info(f"clock: back within {self.limit:g}s of IRIS's; claiming again")
            self._reported = self.ok

    def iris_now(self):
        """IRIS's clock, as well as it is known here."""
        return self.wall() - self.offset
