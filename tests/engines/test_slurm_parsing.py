"""Slurm output parsing and the executor's sbatch call, without a Slurm (a recording runner)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.agent.executors.base import Task, TaskPhase
from suanwang.agent.executors.slurm import (
    PartitionPool,
    SlurmExecutor,
    parse_duration,
    parse_gres,
    parse_nodes,
    parse_sacct,
    parse_size,
    pools_from_nodes,
    status_from_sacct,
)
from suanwang.errors import InvalidSpec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:02.181", 2.181), ("01:02:03", 3723), ("2-00:00:01", 172801), ("", 0), ("INVALID", 0)],
)
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_duration_round_trips_slurms_format(d: int, h: int, m: int, s: int) -> None:
    text = f"{d}-{h:02}:{m:02}:{s:02}" if d else f"{h:02}:{m:02}:{s:02}"
    assert parse_duration(text) == d * 86400 + h * 3600 + m * 60 + s


@pytest.mark.parametrize(("text", "size"), [("63828K", 63828 * 1024), ("200M", 200 * 2**20), ("1.5G", 1.5 * 2**30),
                                            ("512Mn", 512 * 2**20), ("4096", 4096), ("", 0)])
def test_sizes_parse_to_bytes(text: str, size: float) -> None:
    assert parse_size(text) == int(size)


def test_gres_counts_typed_and_untyped_gpus() -> None:
    assert parse_gres("gpu:a100:2(S:0),gpu:2") == (4, "a100")
    assert parse_gres("(null)") == (0, "")


SACCT_OK = "7|sw-j-1|COMPLETED|0:0|4|00:06.500||512M|billing=2,cpu=2,gres/gpu=2,mem=512M,node=1\n" \
           "7.batch|batch|COMPLETED|0:0|4|00:06.500|63828K||cpu=2,gres/gpu=2,mem=512M,node=1\n"


def test_a_completed_job_has_sacct_usage_with_gpu_seconds() -> None:
    status = status_from_sacct("7", parse_sacct(SACCT_OK))
    assert status is not None and status.phase is TaskPhase.SUCCEEDED and status.exit_code == 0
    assert (status.usage.wall_s, status.usage.cpu_s, status.usage.peak_memory_bytes, status.usage.device_s) == (
        4, 6.5, 63828 * 1024, 8)


@pytest.mark.parametrize(
    ("job_state", "exit_code", "step", "phase", "reason"),
    [
        ("FAILED", "3:0", "FAILED|3:0|1K", TaskPhase.FAILED, "exit code 3"),
        ("FAILED", "0:9", "CANCELLED by 0|0:9|1K", TaskPhase.FAILED, "killed by signal 9"),
        ("FAILED", "0:9", "CANCELLED by 0|0:9|200M", TaskPhase.FAILED, "out of memory"),
        ("OUT_OF_MEMORY", "0:125", "OUT_OF_MEMORY|0:125|1K", TaskPhase.FAILED, "out of memory"),
        ("TIMEOUT", "0:0", "CANCELLED|0:15|1K", TaskPhase.FAILED, "time limit reached"),
        ("NODE_FAIL", "0:0", "CANCELLED|0:15|1K", TaskPhase.FAILED, "node failure"),
        ("CANCELLED by 0", "0:0", "CANCELLED|0:15|1K", TaskPhase.CANCELLED, "cancelled by 0"),
        ("PENDING", "0:0", "PENDING|0:0|", TaskPhase.QUEUED, ""),
        ("CONFIGURING", "0:0", "PENDING|0:0|", TaskPhase.QUEUED, ""),
        ("RUNNING", "0:0", "RUNNING|0:0|", TaskPhase.RUNNING, ""),
    ],
)
def test_slurm_states_map_to_phases_with_reasons(job_state, exit_code, step, phase, reason) -> None:
    state, code, rss = step.split("|")
    text = (f"9|n|{job_state}|{exit_code}|1|00:00.1||100M|cpu=1,mem=100M\n"
            f"9.batch|batch|{state}|{code}|1|00:00.1|{rss}||\n")
    status = status_from_sacct("9", parse_sacct(text))
    assert status is not None and status.phase is phase and status.reason.startswith(reason)


def test_a_slurm_job_runs_from_saccts_start_and_waits_before_it() -> None:
    from datetime import datetime

    from suanwang.agent.executors.slurm import parse_start

    start = "2026-12-06T05:12:33"
    running = f"9|n|RUNNING|0:0|4|00:01.0||100M|cpu=1,mem=100M|{start}\n"
    status = status_from_sacct("9", parse_sacct(running))
    assert status is not None and status.phase is TaskPhase.RUNNING
    assert status.started_at == datetime.fromisoformat(start).timestamp()  # the host's local time
    pending = status_from_sacct("9", parse_sacct("9|n|PENDING|0:0|0|00:00.0||100M||Unknown\n"))
    assert pending is not None and (pending.phase, pending.started_at) == (TaskPhase.QUEUED, None)
    done = status_from_sacct("9", parse_sacct(running.replace("RUNNING", "COMPLETED")))
    assert done is not None and done.phase is TaskPhase.SUCCEEDED and done.started_at == status.started_at
    assert parse_start("None") is None and parse_start("") is None


def test_a_job_absent_from_sacct_has_no_status() -> None:
    assert status_from_sacct("8", parse_sacct(SACCT_OK)) is None


NODES = (
    "NodeName=c1 CPUTot=4 Gres=(null) RealMemory=4096 State=IDLE Partitions=hpc OS=Linux 6 #1 SMP\n"
    "NodeName=c2 CPUTot=8 Gres=(null) RealMemory=8192 State=MIXED Partitions=hpc,all\n"
    "NodeName=c3 CPUTot=8 Gres=(null) RealMemory=8192 State=IDLE+DRAIN Partitions=hpc\n"
    "NodeName=g1 CPUTot=4 Gres=gpu:a100:2 RealMemory=8192 State=IDLE Partitions=gpu,all\n"
)


def test_pools_sum_usable_nodes_per_partition() -> None:
    mapping = [PartitionPool("hpc", "p1"), PartitionPool("gpu", "p2", "intelligent")]
    hpc, gpu = pools_from_nodes(parse_nodes(NODES), mapping)
    assert (hpc.cores, hpc.memory_gb, hpc.devices, hpc.node_cores) == (12, 12.0, 0, 8)  # drained c3 left out
    assert (gpu.cores, gpu.devices, gpu.device_model, gpu.node_devices) == (4, 2, "a100", 2)
    (untyped,) = pools_from_nodes(parse_nodes(NODES.replace("gpu:a100:2", "gpu:2")), [PartitionPool("gpu", "p")])
    assert untyped.devices == 0  # a GPU without a model could not be rated: not offered
    with pytest.raises(InvalidSpec, match="'nope'"):
        pools_from_nodes(parse_nodes(NODES), [PartitionPool("nope", "p")])


class Recorder:
    def __init__(self, out: str = "42;cluster\n") -> None:
        self.calls: list[tuple[list[str], str | None, dict[str, str]]] = []
        self.out = out

    def __call__(self, argv: Sequence[str], stdin: str | None, env: Mapping[str, str]) -> str:
        self.calls.append((list(argv), stdin, dict(env)))
        return self.out


def test_start_submits_a_script_with_resources_and_a_clean_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SUANWANG_AGENT_TOKEN", "secret")
    run = Recorder()
    ex = SlurmExecutor([PartitionPool("gpu", "p-gpu", gres_type="a100")], log_dir=tmp_path, slurm_conf="/c/slurm.conf",
                       time_limit_factor=1.5, runner=run)
    task = Task("job/1", 2, ("python", "train.py", "--lr", "0.1 0.2"), "p-gpu", cores=4, memory_gb=1.5, devices=2,
                env={"A": "b"}, workdir="/w", duration_s=600)
    assert ex.start(task) == "42"
    argv, script, env = run.calls[0]
    assert argv[0] == "sbatch" and "--parsable" in argv
    for opt in ("--partition=gpu", "--cpus-per-task=4", "--mem=1536M", "--gres=gpu:a100:2", "--chdir=/w",
                "--time=15", "--job-name=sw-job_1-2", f"--output={tmp_path}/slurm-%j.out", "--no-requeue"):
        assert opt in argv
    assert script == "#!/bin/bash\nexec python train.py --lr '0.1 0.2'\n"
    assert env["A"] == "b" and env["SLURM_CONF"] == "/c/slurm.conf" and "SUANWANG_AGENT_TOKEN" not in env


def test_start_rejects_unmapped_pools_and_garbage_job_ids(tmp_path) -> None:
    ex = SlurmExecutor([PartitionPool("hpc", "p")], log_dir=tmp_path, runner=Recorder("Submitted batch job 5\n"))
    with pytest.raises(InvalidSpec):
        ex.start(Task("j", 1, ("true",), "other"))
    from suanwang.agent.executors.errors import EngineError

    with pytest.raises(EngineError):
        ex.start(Task("j", 1, ("true",), "p"))


class Scripted:
    """A runner answering each client from a queue of outputs (an Exception is raised)."""

    def __init__(self, answers: dict[str, list[object]]) -> None:
        self.answers = answers

    def __call__(self, argv: Sequence[str], stdin: str | None, env: Mapping[str, str]) -> str:
        answer = self.answers[argv[0]].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)


def test_a_job_purged_before_accounting_caught_up_is_asked_again_not_lost(tmp_path) -> None:
    from suanwang.agent.executors.errors import EngineError

    purged = EngineError("squeue exit 1: slurm_load_jobs error: Invalid job id specified")
    run = Scripted({"sacct": ["", SACCT_OK], "squeue": [purged]})
    ex = SlurmExecutor([PartitionPool("hpc", "p")], log_dir=tmp_path, runner=run, recheck_s=0)
    assert ex.poll("7").phase is TaskPhase.SUCCEEDED
    run = Scripted({"sacct": ["", ""], "squeue": [purged, purged]})
    ex = SlurmExecutor([PartitionPool("hpc", "p")], log_dir=tmp_path, runner=run, recheck_s=0)
    assert ex.poll("7").phase is TaskPhase.LOST


def test_a_slurmctld_that_does_not_answer_is_an_engine_error_not_a_lost_job(tmp_path) -> None:
    from suanwang.agent.executors.errors import EngineError

    down = EngineError("squeue exit 1: slurm_load_jobs error: Unable to contact slurm controller")
    run = Scripted({"sacct": [""], "squeue": [down]})
    ex = SlurmExecutor([PartitionPool("hpc", "p")], log_dir=tmp_path, runner=run)
    with pytest.raises(EngineError):
        ex.poll("7")


def test_adopt_waits_out_accountings_placeholder_name_but_refuses_another_name(tmp_path) -> None:
    from suanwang.agent.executors.errors import EngineError

    purged = EngineError("squeue exit 1: slurm_load_jobs error: Invalid job id specified")
    placeholder = SACCT_OK.replace("sw-j-1", "allocation")
    ours = Task("j", 1, ("true",), "p")
    run = Scripted({"squeue": [purged] * 3, "sacct": ["", placeholder, SACCT_OK]})
    ex = SlurmExecutor([PartitionPool("hpc", "p")], log_dir=tmp_path, runner=run, recheck_s=0)
    assert ex.adopt("7", ours)
    run = Scripted({"squeue": [purged], "sacct": [SACCT_OK.replace("sw-j-1", "someone-else")]})
    ex = SlurmExecutor([PartitionPool("hpc", "p")], log_dir=tmp_path, runner=run, recheck_s=0)
    assert not ex.adopt("7", ours)
    run = Scripted({"squeue": ["sw-j-1\n"]})
    assert SlurmExecutor([PartitionPool("hpc", "p")], log_dir=tmp_path, runner=run).adopt("7", ours)


def test_poll_many_answers_every_task_from_one_sacct_and_one_squeue(tmp_path) -> None:
    calls: list[str] = []
    running = "8|sw-j-2|RUNNING|0:0|3|00:01.000||64M|cpu=1,mem=64M\n"
    answers = Scripted({"sacct": [SACCT_OK + running], "squeue": ["9\n8\n"], "sstat": ["8.batch|1M\n"]})

    def run(argv: Sequence[str], stdin: str | None, env: Mapping[str, str]) -> str:
        calls.append(argv[0])
        return answers(argv, stdin, env)

    ex = SlurmExecutor([PartitionPool("hpc", "p")], log_dir=tmp_path, runner=run, recheck_s=0)
    out = ex.poll_many(["7", "8", "9"])
    assert out["7"].phase is TaskPhase.SUCCEEDED
    assert out["8"].phase is TaskPhase.RUNNING and out["8"].usage.peak_memory_bytes == 1024**2
    assert out["9"].phase is TaskPhase.QUEUED  # slurmctld has it, accounting not yet: not known to have started
    assert calls == ["sacct", "squeue", "sstat"]
