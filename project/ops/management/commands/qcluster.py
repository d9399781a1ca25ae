"""qcluster: django-q2's cluster, refusing the development key and stopping on any SIGTERM.

django-q2's leader stops the cluster from its signal handler by setting a multiprocessing
Event that the sentinel waits on, then joining the sentinel. When SIGTERM reaches the whole
process group (systemd's default ``KillMode=control-group``, honcho, most container runtimes on
shutdown), the sentinel and its children die of it at once (their SIGTERM action is the
default); a sentinel killed while it waits on the Event leaves the Event's condition counting
one sleeper that never wakes, and ``Event.set()`` in the leader then blocks for ever in
``notify_all`` (django_q/cluster.py ``Cluster.stop``, multiprocessing/synchronize.py).

The leader here sets the Event from a daemon thread and waits for the sentinel itself: when
the sentinel is alive the stop is django-q2's graceful one, unchanged; when it is already dead
the leader sees it exit and returns instead of hanging.
"""

from __future__ import annotations

import os
import signal
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django_q import cluster as q_cluster
from django_q.conf import logger
from django_q.management.commands import qcluster

from project.ops.secret import refuse_development_secret_key


class Cluster(q_cluster.Cluster):
    def stop(self) -> bool:
        if not self.sentinel.is_alive():
            # The same group signal may have ended the sentinel before this handler ran:
            # the cluster is stopped already, and says so.
            self._stopped()
            return False
        logger.info("Q Cluster %s stopping.", self.name)
        threading.Thread(target=self.stop_event.set, name="qcluster-stop", daemon=True).start()
        self.sentinel.join()
        self._stopped()
        self.start_event = None
        self.stop_event = None
        return True

    def _stopped(self) -> None:
        if self.sentinel.exitcode is not None and self.sentinel.exitcode < 0:
            # Killed with its workers by the same signal: a task in flight is delivered again
            # after Q_CLUSTER["retry"] (docs/operations.md, "Stopping").
            logger.warning(
                "Q Cluster %s: the sentinel ended by %s sent to the whole process group.",
                self.name,
                signal.Signals(-self.sentinel.exitcode).name,
            )
        logger.info("Q Cluster %s has stopped.", self.name)


class Command(qcluster.Command):
    def handle(self, *args, **options):
        try:
            refuse_development_secret_key("qcluster")
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        # As django-q2's own command does (django_q/management/commands/qcluster.py).
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = Cluster()
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
