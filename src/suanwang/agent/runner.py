"""The agent loop: register, heartbeat, lease, run, measure and report.

Every report goes through the durable outbox first and is sent in order;
the platform is reached only by outbound HTTP(S).  When the platform is
down the agent keeps its tasks running, queues their reports and retries
with exponential backoff.  A task's engine starting it is a report too
("started"): until then the platform calls the job ``queued_at_site``.

On restart the agent first names every attempt its outbox says it ran in one
heartbeat and stops, through the engine's stored id, each one the platform
answers as stale (its lease lapsed and the job went to a new attempt), before
re-adopting the rest: the consumer must not pay for two copies of one job.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from suanwang import __version__
from suanwang.agent import job_data
from suanwang.agent.executors.base import Executor, Task, TaskPhase, TaskStatus, Usage
from suanwang.agent.executors.errors import EngineError
from suanwang.agent.job_data import InputMissing
from suanwang.agent.outbox import Outbox, TaskRecord
from suanwang.agent.outputs import OutputRefused
from suanwang.agent.transfer import TransferError
from suanwang.observability.logs import HEADER, REQUEST_ID, new_request_id

log = logging.getLogger("suanwang.agent")

_RETRYABLE = (httpx.TransportError, httpx.TimeoutException)
TIMEOUT_S = 10.0  # for the platform to answer a call


class PlatformUnavailable(Exception):
    """The platform did not answer, or answered 5xx: retry later."""


class Agent:
    def __init__(
        self,
        url: str,
        token: str,
        executor: Executor,
        workdir: Path,
        *,
        heartbeat_s: float = 1.0,
        poll_s: float = 0.1,
        usage_interval_s: float = 10.0,
        max_tasks: int = 64,
        idle_s: float = 10.0,
        datasets_root: Path | None = None,
    ) -> None:
        self.executor = executor
        self.datasets_root = datasets_root  # declared inputs are read and outputs written here (job_data)
        self.outbox = Outbox(Path(workdir) / "agent.db")
        self.http = httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers={"Authorization": f"Bearer {token}"},
                                 timeout=TIMEOUT_S)
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.usage_interval_s = usage_interval_s
        self.max_tasks = max_tasks
        self.idle_s = idle_s  # with no task: one long-poll and one heartbeat per this long (see _idle_interval)
        self.tasks: dict[tuple[str, int], TaskRecord] = {}
        self._registered = False
        self._last_heartbeat = float("-inf")
        self._backoff = 0.0
        self._retry_at = 0.0
        self._last_usage: dict[tuple[str, int], float] = {}
        self._stop = False
        self._lease_s = 15.0  # the platform tells us its lease on register and heartbeat
        self._site_timeout_s = 30.0  # ... and how long a silent site stays online
        self._lease_request = uuid.uuid4().hex

    # --- platform calls ------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any], *, request_id: str | None = None, wait_s: float = 0.0) -> Any:
        """One call, sent with an ``X-Request-ID`` that the platform logs too; our lines about it carry the same id."""
        request_id = request_id or new_request_id()
        token = REQUEST_ID.set(request_id)
        started = time.monotonic()
        try:
            try:
                # A long-poll may hold its reply for ``wait_s`` before the usual time to answer starts.
                timeout = httpx.Timeout(TIMEOUT_S, read=TIMEOUT_S + wait_s) if wait_s else httpx.USE_CLIENT_DEFAULT
                resp = self.http.post(path, json=body, headers={HEADER: request_id}, timeout=timeout)
            except _RETRYABLE as exc:
                raise PlatformUnavailable(f"{exc} (request {request_id})") from exc
            log.debug("platform call", extra={"request_id": request_id, "path": path, "status": resp.status_code,
                                              "duration_ms": round((time.monotonic() - started) * 1000, 2)})
            if resp.status_code >= 500:
                raise PlatformUnavailable(f"{resp.status_code} {resp.text[:200]} (request {request_id})")
            if resp.status_code >= 400:
                raise httpx.HTTPStatusError(f"{resp.status_code}: {resp.text[:300]} (request {request_id})",
                                            request=resp.request, response=resp)
            return resp.json()
        finally:
            REQUEST_ID.reset(token)

    def _online(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _failed(self, exc: Exception) -> None:
        # Never back off longer than a third of the lease: a platform that comes back must hear
        # from us before it gives our jobs away.
        self._backoff = min(self._lease_s / 3, max(0.25, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        log.warning("platform unavailable (%s); retrying in %.1fs", exc, self._backoff)

    def _ok(self) -> None:
        self._backoff = 0.0

    def register(self) -> None:
        pools = [dataclasses.asdict(p) | {"engine": self.executor.engine} for p in self.executor.detect_pools()]
        info = {"hostname": socket.gethostname(), "engine": self.executor.engine, "version": __version__}
        reply = self._post("/agent/register", {"pools": pools, "info": info})
        self._heard(reply)
        self._registered = True
        log.info("registered site %s with pools %s", reply["site"], reply["pools"])
        for warning in reply.get("warnings") or ():  # the catalogue did not know a model: metered conservatively
            log.warning("catalogue: %s", warning)

    # --- the loop ------------------------------------------------------------------------
    def recover(self) -> None:
        """After an agent restart: stop the attempts the platform gave away, re-adopt those the engine still runs."""
        recs = self.outbox.tasks()
        stale = self._stale_attempts(recs)
        for rec in recs:
            task = _task_from(rec)
            if not rec.handle:
                # Killed between recording the task and saving the engine's id: the engine may have it all the same.
                rec.handle = self._find(task) or ""
                self.outbox.add_task(rec)
            if rec.handle and (rec.job_id, rec.attempt) in stale and not rec.kill:
                log.info("killing %s attempt %s: its lease lapsed while this agent was down", rec.job_id, rec.attempt)
                self._kill(rec)
            if rec.handle and self.executor.adopt(rec.handle, task):
                self.tasks[(rec.job_id, rec.attempt)] = rec
                log.info("re-adopted %s attempt %s", rec.job_id, rec.attempt)
            else:
                status = TaskStatus(TaskPhase.LOST, _usage_of(rec), reason="gone from engine after agent restart")
                self.outbox.commit(rec, self._final_reports(rec, status), finished=True)

    def _stale_attempts(self, recs: list[TaskRecord]) -> set[tuple[str, int]]:
        """The stored attempts the platform no longer leases to us, from one heartbeat naming them all.

        An unreachable platform answers nothing here; the loop's heartbeats ask again once it is back.
        """
        if not recs:
            return set()
        try:
            reply = self._heartbeat_call([(r.job_id, r.attempt) for r in recs])
        except (PlatformUnavailable, httpx.HTTPStatusError) as exc:
            log.warning("could not reconcile attempts with the platform at start-up: %s", exc)
            return set()
        return {(k["job_id"], k["attempt"]) for k in reply["kill"]}

    def _kill(self, rec: TaskRecord) -> None:
        try:
            self.executor.cancel(rec.handle)
        except EngineError as exc:  # the next heartbeat answers "kill" again and we retry
            log.warning("engine could not cancel %s attempt %s: %s", rec.job_id, rec.attempt, exc)
            return
        rec.kill = True
        self.outbox.commit(rec, [], finished=False)

    def _find(self, task: Task) -> str | None:
        find = getattr(self.executor, "find", None)
        return find(task) if find is not None else None

    def run_forever(self) -> None:
        self.recover()
        while not self._stop:
            try:
                self.step()
            except Exception:  # a bug in one step must not leave the site silently dead while /health says ok
                log.exception("agent step failed; carrying on")
            time.sleep(self.poll_s)

    def stop(self) -> None:
        self._stop = True

    def step(self) -> None:
        """Follow the engine, then report, then take new work: a freed slot is refilled in the same step."""
        self.follow()
        if self._online():
            try:
                if not self._registered:
                    self.register()
                finished = self.flush()
                interval = self.heartbeat_s if self.tasks else self._idle_interval()
                if time.monotonic() >= self._last_heartbeat + interval:
                    self.heartbeat()
                if len(self.tasks) < self.max_tasks:
                    self.lease(wait_s=self._lease_wait(finished))
                self._ok()
            except PlatformUnavailable as exc:
                self._failed(exc)

    def _idle_interval(self) -> float:
        """How long an agent with nothing to run waits between heartbeats and in one long-poll.

        The platform wakes a long-poll the moment it places a job here, so waiting long costs no
        latency.  Heartbeats then only keep the site online (there is no lease to renew): three
        in every site timeout, as the platform told us.
        """
        return max(self.heartbeat_s, min(self.idle_s, self._site_timeout_s / 3))

    def _lease_wait(self, finished: int) -> float:
        """Long-poll when idle; just after reporting ends, wait briefly for the platform to place
        the next jobs into the freed capacity rather than finding nothing and losing a step."""
        if not self.tasks:
            return self._idle_interval()
        return min(0.2, self.poll_s * 4) if finished else 0.0

    def heartbeat(self) -> None:
        reply = self._heartbeat_call(list(self.tasks))
        for k in reply["kill"]:
            rec = self.tasks.get((k["job_id"], k["attempt"]))
            if rec is not None and not rec.kill:
                log.info("killing %s attempt %s", rec.job_id, rec.attempt)
                self._kill(rec)

    def _heartbeat_call(self, attempts: list[tuple[str, int]]) -> Any:
        running = [{"job_id": j, "attempt": a} for j, a in attempts]
        reply = self._post("/agent/heartbeat", {"running": running, "info": {"outbox": self.outbox.size()}})
        self._last_heartbeat = time.monotonic()
        self._heard(reply)
        return reply

    def _heard(self, reply: dict[str, Any]) -> None:
        """The platform's lease and site timeout, from a register or heartbeat reply."""
        self._lease_s = float(reply.get("lease_s", self._lease_s))
        self._site_timeout_s = float(reply.get("site_timeout_s", self._site_timeout_s))

    def lease(self, wait_s: float) -> None:
        # The id changes only once a reply arrived: a call that failed is repeated with it, so attempts the
        # platform leased before the reply was lost come back to us instead of lapsing unrun.
        body = {"max_jobs": self.max_tasks - len(self.tasks), "wait_s": wait_s, "request_id": self._lease_request}
        tasks = self._post("/agent/lease", body, request_id=self._lease_request, wait_s=wait_s)
        self._lease_request = uuid.uuid4().hex
        recs = []
        for t in tasks:
            try:
                task = Task(job_id=t["job_id"], attempt=t["attempt"], command=tuple(t["command"]), pool=t["pool"],
                            cores=t["cores"], memory_gb=t["memory_gb"], devices=t["devices"], env=t["env"],
                            workdir=t["workdir"], duration_s=t["duration_s"], tenant=t.get("tenant", ""),
                            circuit=t.get("circuit", ""), shots=t.get("shots", 0),
                            device_share=t.get("device_share", 0), device_memory_gb=t.get("device_memory_gb", 0.0),
                            card=t.get("card", -1))
                task = self._with_data(task, t.get("inputs") or [], t.get("output") or {})
            except (KeyError, TypeError, OSError, InputMissing, TransferError) as exc:  # fails alone
                task = Task(job_id=str(t.get("job_id")), attempt=int(t.get("attempt", 0)), command=(), pool="")
                rec = TaskRecord(task.job_id, task.attempt, "", dataclasses.asdict(task), 0, {}, time.time(), 0, False)
                self.outbox.commit(rec, self._final_reports(rec, _failed(f"agent could not read the task: {exc!r}")),
                                   finished=True)
                continue
            rec = TaskRecord(task.job_id, task.attempt, "", dataclasses.asdict(task), 0, {}, time.time(), 0, False)
            self.outbox.add_task(rec)  # recorded before it starts: a crash here leaves a trace to adopt
            recs.append((rec, task))
        workers = min(len(recs), int(getattr(self.executor, "parallel_starts", 1)))
        if workers > 1:  # engines reached by RPC (sbatch, Ray) take starts in parallel
            with ThreadPoolExecutor(workers) as pool:
                outcomes = list(pool.map(self._start, [task for _, task in recs]))
        else:
            outcomes = [self._start(task) for _, task in recs]
        for (rec, _), outcome in zip(recs, outcomes, strict=True):
            if isinstance(outcome, EngineError):
                # Not the job's fault: it goes back to the platform as lost, which requeues it by its policy.
                log.warning("engine refused %s attempt %s: %s", rec.job_id, rec.attempt, outcome)
                status = TaskStatus(TaskPhase.LOST, Usage(), reason=f"engine refused the task: {outcome}"[:500])
                self.outbox.commit(rec, self._final_reports(rec, status), finished=True)
                continue
            if isinstance(outcome, Exception):  # anything else fails this attempt only, never the agent
                log.error("could not start %s attempt %s: %r", rec.job_id, rec.attempt, outcome)
                status = _failed(f"agent could not start the task: {outcome!r}")
                self.outbox.commit(rec, self._final_reports(rec, status), finished=True)
                continue
            rec.handle = outcome
            self.outbox.add_task(rec)
            self.tasks[(rec.job_id, rec.attempt)] = rec

    def _with_data(self, task: Task, inputs: list[dict[str, Any]], output: dict[str, str]) -> Task:
        """The task pointed at its declared inputs and output (agent/job_data.py)."""
        if not inputs and not output:
            return task
        if self.datasets_root is None:
            raise InputMissing("the task declares datasets but this agent has no datasets root (--datasets-root)")
        owner = getattr(self.executor, "job_owner", lambda _task: None)(task)  # the uid the job will run as
        env = job_data.prepare(self.datasets_root, task.job_id, task.attempt, inputs, output, owner=owner)
        return dataclasses.replace(task, env={**task.env, **env}, output_dataset=output.get("dataset_id", ""))

    def _start(self, task: Task) -> str | Exception:
        try:
            return self.executor.start(task)
        except Exception as exc:
            return exc

    def follow(self) -> None:
        """Poll each task; queue its logs, usage and, at the end, its final state."""
        try:
            statuses = self._poll_all()
        except EngineError as exc:  # the engine's clients hiccuped: the tasks are still there, ask again next step
            log.warning("engine poll failed: %s", exc)
            return
        except Exception as exc:
            log.warning("engine poll failed: %r; polling each task", exc)
            statuses = {}
        for key, rec in list(self.tasks.items()):
            try:
                status = statuses.get(rec.handle) or self.executor.poll(rec.handle)
                reports = []
                if status.phase is TaskPhase.RUNNING and not rec.started and not rec.kill:
                    reports.append(self._started_report(rec, status))
                reports += self._log_reports(rec)
            except EngineError as exc:  # the engine, not the task: ask again next step
                log.warning("engine poll of %s failed: %s", rec.handle, exc)
                continue
            except Exception as exc:
                log.error("following %s attempt %s failed: %r", rec.job_id, rec.attempt, exc)
                try:
                    self.executor.cancel(rec.handle)
                except Exception:
                    log.debug("cancel of %s after a failure did not go through", rec.handle)
                status, reports = _failed(f"agent could not follow the task: {exc!r}"), []
            finished = status.phase.is_final
            if finished:
                reports += self._final_reports(rec, status)
                del self.tasks[key]
            elif time.monotonic() - self._last_usage.get(key, time.monotonic()) >= self.usage_interval_s:
                reports += self._usage_reports(rec, status)
            self._last_usage.setdefault(key, time.monotonic())
            if reports or finished:
                self.outbox.commit(rec, reports, finished=finished)

    def _poll_all(self) -> dict[str, TaskStatus]:
        """All tasks' statuses in one engine round trip where the executor offers ``poll_many``."""
        poll_many = getattr(self.executor, "poll_many", None)
        if poll_many is None or not self.tasks:
            return {}
        return dict(poll_many([rec.handle for rec in self.tasks.values()]))

    def _log_reports(self, rec: TaskRecord) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        while True:
            data = self.executor.read_log(rec.handle, rec.log_offset)
            if not data:
                return out
            out.append(("/agent/logs", {"job_id": rec.job_id, "attempt": rec.attempt, "offset": rec.log_offset,
                                        "data_b64": base64.b64encode(data).decode()}))
            rec.log_offset += len(data)

    def _usage_reports(self, rec: TaskRecord, status: TaskStatus) -> list[tuple[str, dict[str, Any]]]:
        """One keyed delta since the last report: (job, attempt, seq) makes a resend harmless."""
        now = time.time()
        u = status.usage
        prev = rec.reported
        delta = {
            "wall_s": max(0.0, u.wall_s - prev.get("wall_s", 0.0)),
            "cpu_s": max(0.0, u.cpu_s - prev.get("cpu_s", 0.0)),
            "device_s": max(0.0, u.device_s - prev.get("device_s", 0.0)),
        }
        if u.shots or prev.get("shots"):
            delta["shots"] = max(0, u.shots - prev.get("shots", 0))
        body = {"job_id": rec.job_id, "attempt": rec.attempt, "seq": rec.seq, "pool": rec.task["pool"],
                "start": rec.last_end, "end": max(now, rec.last_end), "peak_memory_bytes": u.peak_memory_bytes,
                **delta}
        rec.seq += 1
        rec.last_end = body["end"]
        rec.reported = {"wall_s": max(u.wall_s, prev.get("wall_s", 0.0)), "cpu_s": max(u.cpu_s, prev.get("cpu_s", 0.0)),
                        "device_s": max(u.device_s, prev.get("device_s", 0.0)),
                        "shots": max(u.shots, prev.get("shots", 0))}
        self._last_usage[(rec.job_id, rec.attempt)] = time.monotonic()
        return [("/agent/usage", {"records": [body]})]

    def _started_report(self, rec: TaskRecord, status: TaskStatus) -> tuple[str, dict[str, Any]]:
        """The engine started the task: the platform's job becomes running, from the engine's start time."""
        rec.started = True
        return (f"/agent/jobs/{rec.job_id}/status",
                {"attempt": rec.attempt, "phase": "started", "started_at": status.started_at or time.time()})

    def _final_reports(self, rec: TaskRecord, status: TaskStatus) -> list[tuple[str, dict[str, Any]]]:
        reports = self._usage_reports(rec, status)
        out_id = rec.task.get("output_dataset") or ""
        if out_id and status.phase is TaskPhase.SUCCEEDED and self.datasets_root is not None:
            try:  # hashed here, before the success is reported: the platform numbers the version on success
                got = job_data.collect(self.datasets_root, rec.job_id, rec.attempt, out_id)
                body = {"attempt": rec.attempt, "size_bytes": got.size_bytes, "sha256": got.sha256}
                if got.kind == "dir":
                    body |= {"kind": "dir", "archive_sha256": got.archive_sha256, "files": got.files}
                reports.append((f"/agent/jobs/{rec.job_id}/output", body))
            except OutputRefused as exc:
                status = dataclasses.replace(status, phase=TaskPhase.FAILED,
                                             reason=f"declared output refused: {exc}"[:500])
            except (OSError, TransferError) as exc:
                status = dataclasses.replace(status, phase=TaskPhase.FAILED,
                                             reason=f"declared output not written at $SUANWANG_OUTPUT: {exc}"[:500])
        reports.append((f"/agent/jobs/{rec.job_id}/status",
                        {"attempt": rec.attempt, "phase": status.phase.value, "exit_code": status.exit_code,
                         "reason": status.reason, "started_at": status.started_at}))
        return reports

    def flush(self) -> int:
        """Send queued reports in order; usage reports travel in batches.  Returns the final statuses sent."""
        statuses = 0
        while True:
            items = self.outbox.pending()
            if not items:
                return statuses
            batch_ids: list[int] = []
            batch: list[dict[str, Any]] = []
            for item_id, path, body in items:
                if path == "/agent/usage" and len(batch) < 500:
                    batch_ids.append(item_id)
                    batch.extend(body["records"])
            if batch:
                # Every usage record of the window travels first, in one batch.  That keeps each
                # job's own order (its usage was queued before its logs' end and final status).
                self._send(batch_ids, "/agent/usage", {"records": batch})
                continue
            item_id, path, body = items[0]
            self._send([item_id], path, body)
            statuses += path.endswith("/status")

    def _send(self, ids: list[int], path: str, body: dict[str, Any]) -> None:
        try:
            self._post(path, body)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (401, 403):
                raise PlatformUnavailable(f"token refused: {exc}") from exc
            log.error("platform rejected %s: %s; dropping it", path, exc)
        self.outbox.done(ids)

    def close(self) -> None:
        self.http.close()
        self.outbox.close()


def _failed(reason: str) -> TaskStatus:
    return TaskStatus(TaskPhase.FAILED, Usage(), reason=reason[:500])


def _task_from(rec: TaskRecord) -> Task:
    t = dict(rec.task)
    t["command"] = tuple(t["command"])
    return Task(**t)


def _usage_of(rec: TaskRecord) -> Any:
    from suanwang.agent.executors.base import Usage

    return Usage(wall_s=rec.reported.get("wall_s", 0.0), cpu_s=rec.reported.get("cpu_s", 0.0))
