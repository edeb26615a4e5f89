"""What a job may carry to a process: execve's limits, checked in the core so every door asks the same."""

from __future__ import annotations

from suanwang.domain.job import MAX_ARG_BYTES, MAX_CARRY_BYTES, carry_problems


def test_plain_commands_environments_and_directories_pass() -> None:
    assert carry_problems(["python3", "-c", "print('算网')"], {"LANG": "zh_CN.UTF-8", "EMPTY": ""}, "/data/x") == []
    assert carry_problems(["x" * MAX_ARG_BYTES], {}, "") == []


def test_each_problem_names_its_field() -> None:
    problems = carry_problems(["echo", "a\0b", "\ud800"], {"A=B": "1", "": "2", "C": "d\0", "E\0": "f"}, "/w\0")
    text = "\n".join(problems)
    for needle in ("command.1: must not contain a NUL byte", "command.2: not valid UTF-8",
                   "env.'A=B': a variable name must not contain '='", "env: a variable name must not be empty",
                   "env.'C': must not contain a NUL byte", "env.'E\\x00': must not contain a NUL byte",
                   "workdir: must not contain a NUL byte"):
        assert needle in text, needle


def test_strings_past_the_kernels_limits_are_refused() -> None:
    (one,) = carry_problems(["x" * (MAX_ARG_BYTES + 1)], {}, "")
    assert one.startswith("command.0: 131072 bytes")
    assert any(p.startswith("env.'BIG'") for p in carry_problems(["true"], {"BIG": "v" * MAX_ARG_BYTES}, ""))
    many = [chr(ord("a") + i) * 100_000 for i in range(11)]  # each fits, all together do not
    assert carry_problems(many, {}, "") == [f"command and env: {sum(len(a) + 9 for a in many) + 8} bytes in all, "
                                            f"more than a job may carry ({MAX_CARRY_BYTES})"]
    assert carry_problems(["true"], {}, "/" + "d" * 5000)[0].startswith("workdir: 5001 bytes")
    assert carry_problems(["é" * 70_000], {}, "")[0].startswith("command.0: 140000 bytes")  # bytes, not characters
